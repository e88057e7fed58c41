package directory

// Sources of directory data. A Custody group mirrored from a source is
// keyed "SOURCE:ID" with the source's own group id, so renaming a group in
// the identity provider breaks no assignment.
const (
	SourceSCIM   = "scim"
	SourceGoogle = "google"
)

// A Person is a user as an identity provider has it.
type Person struct {
	ID     string `json:"id"`    // the provider's id of the user, stable across renames
	Email  string `json:"email"` // primary or work email: the Custody user it becomes
	Name   string `json:"name,omitempty"`
	Mobile string `json:"mobile,omitempty"`
	// Active is false for a user deactivated (SCIM active=false) or
	// suspended (Google).
	Active bool `json:"active"`
	// Groups are the ids of the provider's groups the user is a member
	// of, directly or through nested groups.
	Groups []string `json:"groups,omitempty"`
}

// A Group is a group as an identity provider has it.
type Group struct {
	ID   string `json:"id"`
	Name string `json:"name"` // its display name (Google: its email address when it has no name)
}

// GroupKey is the Custody group a provider's group is mirrored as.
func GroupKey(source, id string) string { return source + ":" + id }
