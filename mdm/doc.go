// Package mdm is Apple's Mobile Device Management protocol: the check-in
// messages a device sends (Authenticate, TokenUpdate, CheckOut, ...), the
// commands a server queues for it and the responses the device returns.
//
// The message, command and response types are generated from Apple's
// device-management schema (see internal/mdmgen): one Go type per check-in
// message and per command, with every key of the schema as a field with
// its plist name. Commands newer than the schema go through RawCommand.
//
// A dictionary the schema keys by data, written there as a wildcard key
// ("ANY app identifier", "ANY restriction name", "ANY"), is a map:
// ManagedApplicationListResponse.ManagedApplicationList is a
// map[string]ManagedApplicationItem keyed by bundle identifier, and
// RestrictionsResponse.ProfileRestrictions a map of RestrictionsDictionary
// keyed by profile identifier. A dictionary mixing fixed keys and a
// wildcard (the schema has none today) would be a struct of the fixed keys
// with the others in its field Other.
//
// A key a device sends that the types lack is not an error: UnknownKeys
// lists such keys of a body, and DecodeResponse lists them in
// Response.Dropped, for a server to log.
package mdm

//go:generate go run ./internal/mdmgen -schema ../../shared/apple-device-management/mdm -out . -checkin-schema mdmtest/checkin_schema_gen_test.go
