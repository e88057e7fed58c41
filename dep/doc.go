// Package dep is a client of Apple's device assignment API
// (mdmenrollment.apple.com), the service behind Apple Automated Device
// Enrollment ("DEP") in Apple Business and School Manager, and a syncer
// that brings a server's devices into any store.
//
// A server token comes from Apple Business Manager as a .p7m encrypted to
// a public key the MDM server generated: NewKeyPair makes the key and its
// certificate to upload, DecryptToken opens the .p7m, and ParseToken reads
// a token that is already decrypted.
//
// A Client calls the API with one token. It authenticates with OAuth 1.0a
// (HMAC-SHA1) at GET /session, sends the session token in
// X-ADM-Auth-Session and X-Server-Protocol-Version on every call, adopts
// a refreshed session token from any response, and authenticates again
// when a session is refused (401, or 403 FORBIDDEN). 429 and 5xx answers
// are retried with Retry-After honoured and bounded, jittered exponential
// backoff; other refusals are an *Error whose code errors.Is matches
// (ErrExhaustedCursor, ErrExpiredCursor, ErrTermsNotSigned...). It covers
// the account, fetch and sync of devices, device details, disowning, and
// profiles: define, get, assign and remove.
//
// A Syncer fetches every device until the fetch is exhausted, then syncs
// changes by cursor. It stores the cursor only after the page's devices
// have been handled, so a crash loses nothing (the page is handled again);
// a cursor the service keeps echoing with more_to_follow ends the round
// after a few tries (ErrEchoedCursor) instead of spinning; an expired or
// invalid cursor starts the full fetch again.
//
// Package dep/deptest is a fake of the service for tests, and
// examples/adesync uses this package alone.
package dep
