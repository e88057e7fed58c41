// Package enroll is the lifecycle that ties the protocol packages together:
// who may enrol, and how. Now it owns Apple enrollment profiles: one-time
// enrollment tokens, the .mobileconfig with its SCEP and MDM payloads, and
// its CMS signature. Each profile carries a fresh SCEP challenge minted for
// the token, so the certificate the device gets records which token
// enrolled it: the second link of the identity chain.
//
// It does not speak the protocols itself: package scep issues the identity
// and package mdm serves the device afterwards.
package enroll
