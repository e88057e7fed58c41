// Package enroll is the lifecycle that ties the protocol packages together:
// who may enrol, and how. Now it owns Apple enrollment profiles: one-time
// enrollment tokens, the .mobileconfig with its SCEP and MDM payloads, and
// its CMS signature. Each profile carries a fresh SCEP challenge minted for
// the token, so the certificate the device gets records which token
// enrolled it: the second link of the identity chain.
//
// Pre-enrollment: a Record is a device known before it enrols, keyed by its
// serial number, with its platform, ownership, user and groups, and a
// Status that follows it from pre-approved to wiped; a User is keyed by
// email. ReadCSV reads them from a CSV import: header auto-mapping, every
// bad row reported with its line number. A RecordStore imports them in one
// transaction, merging re-imported rows into what it has (MergeRecord,
// MergeUser) so that importing a file twice changes nothing.
//
// It does not speak the protocols itself: package scep issues the identity
// and package mdm serves the device afterwards.
package enroll
