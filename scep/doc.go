// Package scep issues device identities over the Simple Certificate
// Enrollment Protocol (RFC 8894).
//
// It owns the first link of Custody's identity chain: a device proves who it
// is with a certificate that our CA issued against a one-time challenge. The
// package provides
//
//   - a Server, an http.Handler answering GetCACaps, GetCACert and
//     PKIOperation (PKCSReq and RenewalReq, over GET and POST);
//   - a CA that signs certificates locally, behind the Signer interface so an
//     external authority (see package scep/stepca) can take its place;
//   - one-time challenges: random, expiring, stored only as a SHA-256 hash,
//     consumed in the same transaction that records the issued certificate;
//   - a Client for the same operations, used by simulated devices.
//
// The message layer (parsing and verifying PKIMessages, decrypting the
// PKCS#10 request) is github.com/smallstep/scep. Outgoing messages are built
// here because that library's builders use SHA-1 and DES through
// github.com/smallstep/pkcs7's package-level defaults: Custody signs with
// SHA-256 and envelopes with AES-CBC, choosing the key size the peer used.
//
// Storage is the Store interface; package storage/bolt implements it and
// storage/storagetest is the conformance suite for any implementation. The
// package does not know about devices or enrollments: a challenge can carry
// an opaque id of what it was minted for, and the issued certificate records
// it, which is how callers bind an identity to their own records.
package scep
