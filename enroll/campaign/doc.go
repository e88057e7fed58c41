// Package campaign runs migration campaigns: users and devices moved in
// rings, invited through the organisation's own SMTP server (or a
// webhook) with a one-time enrollment link and its QR code, tracked until
// they enrol, and reminded if they do not.
//
// A Ring is a cohort: an enroll group (read when the ring is), named
// members (enroll.RecordRef, enroll.UserRef; ReadMembers reads them from
// a CSV file or one value of its column), or both, with an optional
// schedule. Targets resolves it to whom messages go: each pre-enrolled
// device, and each member user without one.
//
// Campaigns runs Jobs. A job fixes its targets when it starts, as
// Deliveries in the Store, and sends one message at a time: each step
// writes the outcome of the message before with "sending" for this one,
// so a job stopped anywhere has at most one message in doubt, which it
// sends again when resumed and counts as a possible duplicate. Temporary
// failures are retried with backoff (Retry); permanent ones fail that
// delivery with the server's reply. Campaigns resumes unfinished jobs when
// it starts, runs one at a time, honours a ring's NotBefore, and acts on
// deadlines (an overdue group, a final reminder).
//
// RingProgress counts a ring's targets by state (pre-approved, invited,
// failed, enrolled) from its deliveries and from the records the protocols
// update, with a timeline for a chart.
//
// Messages are rendered from Templates (Go text and HTML templates over an
// Invitation) with the link's QR code inline, and sent by a Sender: a
// Mailer (github.com/wneessen/go-mail: implicit TLS, STARTTLS or none,
// AUTH, a custom CA, sessions reused, a rate) or a Webhook (signed JSON
// for an SMS gateway or a chat workflow).
package campaign
