package mdm_test

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/micromdm/plist"

	"github.com/custodymdm/custody/mdm"
)

// BenchmarkIdleCheckin is the server's work for one signed Idle check-in
// with nothing queued: read, verify the Mdm-Signature and the certificate
// chain, check the binding, look up the queue.
//
//	go test -run '^$' -bench IdleCheckin -benchmem ./mdm/
func BenchmarkIdleCheckin(b *testing.B) {
	s := newBenchServer(b)
	d := s.device(b)
	ctx := context.Background()
	if err := d.Authenticate(ctx); err != nil {
		b.Fatal(err)
	}
	d.TokenUpdate(ctx)
	body, _ := plist.Marshal(&mdm.CommandResult{Status: mdm.StatusIdle, UDID: d.UDID})
	sig, _ := mdm.Sign(body, d.Cert, d.Key)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		req := httptest.NewRequest(http.MethodPut, "/mdm", bytes.NewReader(body))
		req.Header.Set("Mdm-Signature", sig)
		rec := httptest.NewRecorder()
		s.svc.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			b.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
	}
}

// BenchmarkCommandRoundTrip is one command's server side: the device's
// Acknowledged result is verified and stored (an fsync'd bbolt write) and
// the next command is returned; the enqueue that feeds it is not timed.
//
//	go test -run '^$' -bench CommandRoundTrip -benchmem ./mdm/
func BenchmarkCommandRoundTrip(b *testing.B) {
	s := newBenchServer(b)
	d := s.device(b)
	ctx := context.Background()
	d.Authenticate(ctx)
	d.TokenUpdate(ctx)
	type answer struct {
		body []byte
		sig  string
	}
	answers := make([]answer, b.N)
	for i := range answers {
		uuid := s.enqueue(b, d.UDID, &mdm.DeviceLock{})
		body, _ := plist.Marshal(&mdm.CommandResult{Status: mdm.StatusAcknowledged, UDID: d.UDID, CommandUUID: uuid})
		sig, _ := mdm.Sign(body, d.Cert, d.Key)
		answers[i] = answer{body, sig}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		req := httptest.NewRequest(http.MethodPut, "/mdm", bytes.NewReader(answers[i].body))
		req.Header.Set("Mdm-Signature", answers[i].sig)
		rec := httptest.NewRecorder()
		s.svc.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			b.Fatalf("status %d: %s", rec.Code, rec.Body)
		}
	}
}
