// Package stepca lets a step-ca certificate authority (smallstep) issue the
// device identities that package scep hands out, for organisations whose PKI
// already runs on step-ca.
//
// A Signer is a client of step-ca's HTTPS API. For every CSR that the SCEP
// server has authorised, it mints a one-time token (OTT) with the private key
// of one of step-ca's JWK provisioners and posts the CSR and the token to
// /1.0/sign. The token names the CSR's common name as its subject, lists the
// CSR's SANs, and is bound to that one CSR by its SHA-256 fingerprint, so a
// token seen in transit cannot be spent on another key (step-ca checks this
// since v0.27.3; older versions ignore the claim). TLS to step-ca is
// verified against step-ca's own root certificate and nothing else;
// FetchRoot obtains that root from its fingerprint the way `step ca
// bootstrap` does. CACerts returns step-ca's intermediates and root, which a
// SCEP server fronting step-ca publishes in GetCACert next to its own RA
// certificate.
//
// The package owns the client side only: the token, the request and the
// answer. What the certificate finally contains is step-ca's decision. The
// provisioner's template shapes the subject and extensions: step-ca's default
// template keeps only the common name, adds the SANs (the common name as a
// DNS name when the CSR has none) and sets serverAuth and clientAuth; a
// template with "subject": {{ toJson .Insecure.CR.Subject }} keeps the CSR's
// whole subject. The provisioner's claims bound the validity: a JWK
// provisioner allows 24 hours unless maxTLSCertDuration is raised, so
// configure it for the Validity the Signer asks for.
// Revocation, renewal and the SCEP protocol itself are not here: the SCEP
// server decides who gets a certificate and records what was issued.
//
// It speaks step-ca's JSON API directly rather than through
// github.com/smallstep/certificates/ca, whose client reads a default identity
// from $STEPPATH unless a package-level switch is flipped, and whose package
// compiles the whole CA into every binary that imports it.
package stepca
