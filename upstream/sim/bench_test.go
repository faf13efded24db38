package sim

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/chittyos/chittyid-sidecar/upstream"
	"github.com/chittyos/chittyid-sidecar/upstream/chittyid"
)

// BenchmarkMint measures mints per second through loopback HTTP with
// parallel keep-alive clients (net/http on the client side, so part of the
// cost is the client's).
func BenchmarkMint(b *testing.B) {
	for _, tc := range allConfigs() {
		b.Run(tc.name, func(b *testing.B) {
			s := start(b, tc.cfg)
			c := newClient(b)
			c.hc.Transport.(*http.Transport).MaxIdleConnsPerHost = 64
			path, body := s.URL()+"/mint", `{"entity":"EVNT"}`
			if tc.cfg.Dialect == upstream.DialectWorker {
				path, body = s.URL()+"/v1/mint", `{"entityType":"event"}`
			}
			b.ReportAllocs()
			b.ResetTimer()
			begin := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					r, err := c.try("POST", path, body)
					if err != nil || r.status != 200 {
						b.Errorf("mint: %v %d", err, r.status)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/time.Since(begin).Seconds(), "mints/s")
		})
	}
}

// BenchmarkValidate measures client-v1 validates of a minted ID.
func BenchmarkValidate(b *testing.B) {
	s := start(b, Config{})
	c := newClient(b)
	id := c.mint(s, "PEO")
	url := s.URL() + "/validate/" + id
	b.ResetTimer()
	begin := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if r, err := c.try("GET", url, nil); err != nil || r.status != 200 {
				b.Errorf("validate: %v", err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(begin).Seconds(), "validates/s")
}

// BenchmarkBatch measures client-v1 batches of 100.
func BenchmarkBatch(b *testing.B) {
	s := start(b, Config{Format: chittyid.FormatNumeric})
	c := newClient(b)
	body := `{"requests":[` + fmt.Sprint(`{"entity":"PEO"}`)
	for range 99 {
		body += `,{"entity":"INFO"}`
	}
	body += "]}"
	b.ResetTimer()
	begin := time.Now()
	for range b.N {
		if r, err := c.try("POST", s.URL()+"/mint/batch", body); err != nil || r.status != 200 {
			b.Fatalf("batch: %v", err)
		}
	}
	b.ReportMetric(float64(b.N*100)/time.Since(begin).Seconds(), "ids/s")
}

// BenchmarkFormatID measures ID generation alone.
func BenchmarkFormatID(b *testing.B) {
	now := time.Now()
	for _, f := range []chittyid.Format{chittyid.FormatOfficial, chittyid.FormatNumeric} {
		b.Run(f.String(), func(b *testing.B) {
			b.ReportAllocs()
			for i := range b.N {
				_ = formatID(f, uint64(i), 'P', now)
			}
		})
	}
}
