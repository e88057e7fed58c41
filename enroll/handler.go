package enroll

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/custodymdm/custody/scep"
)

// DefaultChallengeTTL is how long the SCEP challenge inside a served profile
// stays valid: the device installs the profile right after fetching it.
const DefaultChallengeTTL = time.Hour

// A ProfileServer serves signed enrollment profiles at GET .../{token}: it
// consumes the one-time token, mints a SCEP challenge for it, and returns
// the profile signed by the server's profile-signing identity.
type ProfileServer struct {
	Tokens     Store
	Challenges scep.Store
	// Profile is the profile template; Challenge and Subject are filled
	// per request.
	Profile ProfileConfig
	// Topic, when set, gives the current APNs topic (it changes when a
	// push certificate is uploaded), overriding Profile.Topic.
	Topic func() string

	SignerCert *x509.Certificate
	SignerKey  crypto.Signer
	Chain      []*x509.Certificate // the signing certificate's issuers

	ChallengeTTL time.Duration // DefaultChallengeTTL when zero
	Logger       *slog.Logger
}

func (p *ProfileServer) log() *slog.Logger {
	if p.Logger != nil {
		return p.Logger
	}
	return slog.Default()
}

// ServeHTTP takes the token from the {token} path value.
func (p *ProfileServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		http.Error(w, "enroll: use GET", http.StatusMethodNotAllowed)
		return
	}
	secret := r.PathValue("token")
	if secret == "" || len(secret) > 128 {
		http.Error(w, "enroll: missing or malformed enrollment token", http.StatusBadRequest)
		return
	}
	ctx := r.Context()
	hash := HashToken(secret)
	now := time.Now().UTC()
	// A read first, so a guessed token costs no write.
	t, err := p.Tokens.TokenByHash(ctx, hash)
	switch {
	case errors.Is(err, ErrNotFound):
		p.refuse(w, r, http.StatusNotFound, "unknown enrollment link")
		return
	case err != nil:
		p.fail(w, err)
		return
	case !t.UsedAt.IsZero():
		p.refuse(w, r, http.StatusGone, "this enrollment link has already been used")
		return
	case !now.Before(t.ExpiresAt):
		p.refuse(w, r, http.StatusGone, "this enrollment link has expired")
		return
	}
	profile, ch, err := p.issue(ctx, t, hash, now)
	switch {
	case errors.Is(err, ErrTokenUsed), errors.Is(err, ErrTokenExpired), errors.Is(err, ErrNotFound):
		p.refuse(w, r, http.StatusGone, "this enrollment link has already been used")
		return
	case err != nil:
		p.fail(w, err)
		return
	}
	p.log().Info("enroll: profile served", "token_id", t.ID, "challenge_id", ch.ID, "for", t.For, "remote", r.RemoteAddr)
	writeProfile(w, profile)
}

func writeProfile(w http.ResponseWriter, profile []byte) {
	w.Header().Set("Content-Type", "application/x-apple-aspen-config")
	w.Header().Set("Content-Disposition", `attachment; filename="enroll.mobileconfig"`)
	w.Write(profile)
}

// issue mints a SCEP challenge for a token, consumes the token, and
// returns the signed profile carrying the challenge.
func (p *ProfileServer) issue(ctx context.Context, t *Token, hash []byte, now time.Time) ([]byte, *scep.Challenge, error) {
	ttl := p.ChallengeTTL
	if ttl <= 0 {
		ttl = DefaultChallengeTTL
	}
	ch, challenge, err := scep.NewChallenge(ctx, p.Challenges, ttl, "enrollment profile", t.ID)
	if err != nil {
		return nil, nil, err
	}
	// Consuming is the atomic step: of two requests racing with one token,
	// one gets a profile. The loser's challenge is never revealed and
	// expires unused.
	if t, err = p.Tokens.ConsumeToken(ctx, hash, now, ch.ID); err != nil {
		return nil, nil, err
	}
	cfg := p.Profile
	cfg.Challenge = challenge
	if p.Topic != nil {
		cfg.Topic = p.Topic()
	}
	cfg.Subject = "Custody " + t.ID
	profile, err := BuildProfile(cfg)
	if err == nil {
		profile, err = SignProfile(profile, p.SignerCert, p.SignerKey, p.Chain...)
	}
	return profile, ch, err
}

func (p *ProfileServer) refuse(w http.ResponseWriter, r *http.Request, code int, msg string) {
	p.log().Info("enroll: profile refused", "status", code, "reason", msg, "remote", r.RemoteAddr)
	http.Error(w, msg, code)
}

func (p *ProfileServer) fail(w http.ResponseWriter, err error) {
	p.log().Error("enroll: profile", "err", err)
	http.Error(w, "enroll: internal error", http.StatusInternalServerError)
}
