// Package mdm is Apple's Mobile Device Management protocol: the check-in
// messages a device sends (Authenticate, TokenUpdate, CheckOut, ...), the
// commands a server queues for it and the responses the device returns.
//
// The message, command and response types are generated from Apple's
// device-management schema (see internal/mdmgen): one Go type per check-in
// message and per command, with every key of the schema as a field with
// its plist name. Commands newer than the schema go through RawCommand.
package mdm

//go:generate go run ./internal/mdmgen -schema ../../shared/apple-device-management/mdm -out .
