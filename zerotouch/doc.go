// Package zerotouch manages Android devices through Google's official APIs
// and the google.golang.org/api clients: the Android Management API
// (enterprises, policies, enrollment tokens and their QR payloads, devices,
// commands, wipe) and the zero-touch customer API (configurations applied to
// devices by IMEI or serial, so they enrol at first boot).
//
// Package zerotouch/zerotouchtest is a fake of the endpoints it uses, with
// a simulated Android device.
package zerotouch

import "encoding/json"

var jsonUnmarshal = json.Unmarshal
