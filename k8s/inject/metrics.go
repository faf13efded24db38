package inject

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Outcomes of a review beyond Mutate's: the metrics' result label.
const (
	// outcomeDenied: the pod asked for the sidecar in a way it cannot have.
	outcomeDenied = "denied"
	// outcomeInvalid: a review whose request the injector cannot handle
	// (not a pod, not a create, an undecodable pod): denied.
	outcomeInvalid = "invalid"
	// outcomeMalformed: a body that is not an AdmissionReview: a 4xx.
	outcomeMalformed = "malformed"
)

// metrics are the injector's Prometheus metrics, registered on the
// registry NewServer is given.
type metrics struct {
	reviews      *prometheus.CounterVec
	duration     prometheus.Histogram
	warnings     prometheus.Counter
	certReloads  *prometheus.CounterVec
	certNotAfter prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		reviews: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "chittyid_injector_reviews_total",
			Help: "Admission reviews answered, by result: injected, not_requested, opted_out, already_injected, denied, invalid, malformed.",
		}, []string{"result"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "chittyid_injector_review_duration_seconds",
			Help:    "Time from a review's request to its response having been written.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .05, .25, 1},
		}),
		warnings: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "chittyid_injector_warnings_total",
			Help: "Admission warnings returned: settings of an app's pod kept although the sidecar wants another.",
		}),
		certReloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "chittyid_injector_certificate_reloads_total",
			Help: "Serving certificate loads after a change of its files, by result (ok, error: the old certificate stays).",
		}, []string{"result"}),
		certNotAfter: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "chittyid_injector_certificate_not_after_timestamp_seconds",
			Help: "Expiry of the serving certificate in use, in Unix seconds.",
		}),
	}
	for _, c := range []prometheus.Collector{m.reviews, m.duration, m.warnings, m.certReloads, m.certNotAfter} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	for _, r := range []string{OutcomeInjected, OutcomeNotRequested, OutcomeOptedOut, OutcomeAlreadyInjected, outcomeDenied, outcomeInvalid, outcomeMalformed} {
		m.reviews.WithLabelValues(r)
	}
	for _, r := range []string{"ok", "error"} {
		m.certReloads.WithLabelValues(r)
	}
	return m, nil
}

func (m *metrics) observe(outcome string, d time.Duration) {
	m.reviews.WithLabelValues(outcome).Inc()
	m.duration.Observe(d.Seconds())
}
