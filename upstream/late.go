package upstream

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/chittyos/chittyid-sidecar/config/field"
	"github.com/valyala/fasthttp"
)

// LateAnswers awaits the answers of mints whose callers gave up, so that
// no ID upstream minted goes unrecorded. A mint's caller waits until its
// deadline as usual, but the exchange itself may run up to
// upstream.lateAnswerWindow longer, on a goroutine of its own. If upstream
// answers in that time, it minted for nobody: the IDs go to the report
// function. If it never answers, whether it minted is unknown: the report
// says so, with the idempotency key that reconciles it.
//
// One LateAnswers is shared by every Client a process builds (like
// Sessions), so that Wait at shutdown also covers the Clients a reload
// retired. Its methods are safe for concurrent use.
type LateAnswers struct {
	report func(op, idempotencyKey string, info CallInfo, ids []string, err error)
	wg     sync.WaitGroup // one count per exchange still running
}

// NewLateAnswers returns a LateAnswers that tells report of every mint
// answered after its caller gave up (ids), or never answered (err), the
// credential the mint was sent with redacted from both. report runs on the
// goroutine that awaited the answer; it must not block long.
func NewLateAnswers(report func(op, idempotencyKey string, info CallInfo, ids []string, err error)) *LateAnswers {
	if report == nil {
		panic("upstream: NewLateAnswers with a nil report")
	}
	return &LateAnswers{report: report}
}

// Wait blocks until every exchange still running has its answer or has run
// out of time: at most upstream.mintTimeout plus lateAnswerWindow after the
// last mint began.
func (l *LateAnswers) Wait() { l.wg.Wait() }

// send runs r on c until deadline for its caller; the exchange goes on
// until lateWindow after it.
func (l *LateAnswers) send(c *Client, r *request, deadline time.Time, th traceHeaders) (response, error) {
	x := &watched{done: make(chan struct{})}
	l.wg.Add(1)
	go l.watch(c, r, deadline.Add(c.lateWindow), x, th)
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-x.done:
		return x.res, x.err
	case <-t.C:
	}
	if !x.abandoned.CompareAndSwap(false, true) {
		<-x.done // the answer came in just now
		return x.res, x.err
	}
	return response{}, fasthttp.ErrTimeout
}

// watched is one exchange run by watch.
type watched struct {
	done      chan struct{} // closed when res and err are set, unless abandoned
	abandoned atomic.Bool   // the caller stopped waiting
	res       response
	err       error
}

// watch runs the exchange for send; Wait waits for it.
func (l *LateAnswers) watch(c *Client, r *request, deadline time.Time, x *watched, th traceHeaders) {
	defer l.wg.Done()
	res, err := c.do(r, deadline, th)
	if !x.abandoned.CompareAndSwap(false, true) { // the caller gave up
		switch {
		case err != nil: // its text may quote upstream's bytes: redacted
			l.report(r.op, r.idempotencyKey, r.info, nil, fmt.Errorf("awaiting the answer after the caller gave up: %w", field.RedactErr(err, r.auth)))
		case res.status >= 200 && res.status < 300:
			if ids := r.late(res.body); len(ids) > 0 {
				l.report(r.op, r.idempotencyKey, r.info, redactAll(ids, r.auth), nil)
			}
		}
		return
	}
	x.res, x.err = res, err
	close(x.done)
}
