// Package enroll is the lifecycle that ties the protocol packages together:
// who may enrol, how, and what happens to a device from the moment it is
// known to the moment it is wiped.
//
// Enrollment profiles: one-time enrollment tokens (links), the
// .mobileconfig with its SCEP and MDM payloads, and its CMS signature
// (ProfileServer, BuildProfile, SignProfile). Each profile carries a fresh
// SCEP challenge minted for the token, so the certificate the device gets
// records which token enrolled it.
//
// Pre-enrollment: a Record is a device known before it enrols, keyed by its
// serial number, with its platform, ownership, user and groups, and a
// Status that follows it from pre-approved to wiped; a User is keyed by
// email. ReadCSV reads them from a CSV import (header auto-mapping, every
// bad row reported with its line number) and Import stores a file in one
// transaction, all of it or nothing, merging re-imported rows into what
// the RecordStore has (MergeRecord, MergeUser) so that importing a file
// twice changes nothing.
//
// The Lifecycle follows records through the protocols. Its Admit, set as
// mdm.Service.Admit, decides at Authenticate whether a device may enrol:
// the link its certificate came from must have been minted for its record
// (RecordRef) or its user (UserRef), and with Settings.PreEnrolledOnly a
// device without a record is refused. It links the record to the token,
// certificate and enrollment, and logs each step in the record's History.
// As the service's mdm.EventHandler it completes enrollment at TokenUpdate
// and queues the Assignments (profiles and commands given to groups) of
// the device's groups, each once per enrollment, and records unenrollment,
// the wipe and the revocation of the wiped device's certificate. Trace
// returns the whole chain of a device.
//
// It does not speak the protocols itself: package scep issues the identity
// and package mdm serves the device.
package enroll
