package scep_test

import (
	"context"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	smscep "github.com/smallstep/scep"

	"github.com/custodymdm/custody/scep"
)

// BenchmarkServerPKCSReq measures the server's own work per issuance, with
// requests built before the timer starts: parse and verify, decrypt the
// RSA envelope, check and consume the challenge, sign the certificate,
// store it (bbolt, fsync'd), sign and envelope the CertRep.
//
//	go test -run '^$' -bench ServerPKCSReq -benchtime 1000x ./scep/
func BenchmarkServerPKCSReq(b *testing.B) {
	f := newFixture(b)
	msgs := make([][]byte, b.N)
	for i := range msgs {
		k := key(i % 8)
		self, _ := scep.SelfSigned(k, "bench")
		_, secret, err := scep.NewChallenge(context.Background(), f.store, time.Hour, "", "")
		if err != nil {
			b.Fatal(err)
		}
		msgs[i], err = scep.RequestMessage(smscep.PKCSReq, self, k, testCA().Cert, mustCSR(k, secret), scep.OIDAES256CBC)
		if err != nil {
			b.Fatal(err)
		}
	}
	var next atomic.Int64
	b.ResetTimer()
	b.SetParallelism(4)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := next.Add(1) - 1
			code, body := post(b, f.server, msgs[i])
			if code != http.StatusOK {
				b.Errorf("status %d: %s", code, body)
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "certs/s")
	n := 0
	f.store.Certs(context.Background(), func(*scep.IssuedCert) bool { n++; return true })
	if n != b.N {
		b.Fatalf("%d certificates stored, want %d", n, b.N)
	}
}
