package scim

import (
	"context"
	"time"
)

// A Stored resource: its attributes (without id, meta and schemas, which
// the service provider adds) with what the store keeps beside them.
type Stored struct {
	Type     string    `json:"type"` // "User" or "Group"
	ID       string    `json:"id"`
	Key      string    `json:"key,omitempty"` // the unique key: a user's userName, lower-cased
	Version  int       `json:"version"`       // 1 when created, +1 at each change
	Created  time.Time `json:"created"`
	Modified time.Time `json:"modified"`
	Attrs    Resource  `json:"attrs"`
}

// A Token is a bearer token an identity provider presents, stored as the
// SHA-256 of its value.
type Token struct {
	ID      string    `json:"id"`
	Name    string    `json:"name"`
	Hash    []byte    `json:"hash"`
	Created time.Time `json:"created"`
	LastUse time.Time `json:"last_use,omitzero"`
}

// Store keeps SCIM resources and tokens.
type Store interface {
	// Create stores a new resource; ErrUniqueness when its Key (non-empty)
	// is another resource's of its type.
	Create(ctx context.Context, s *Stored) error
	// Get returns a resource, or ErrNotFound.
	Get(ctx context.Context, typ, id string) (*Stored, error)
	// Update applies fn to a resource (ErrNotFound if none) in one
	// transaction and stores what it returns unless nil; ErrUniqueness
	// when the new Key is another's. It returns the stored resource.
	Update(ctx context.Context, typ, id string, fn func(*Stored) (*Stored, error)) (*Stored, error)
	// Delete deletes a resource and returns what it was; ErrNotFound if
	// none.
	Delete(ctx context.Context, typ, id string) (*Stored, error)
	// List calls fn for each resource of a type in ID order until it
	// returns false.
	List(ctx context.Context, typ string, fn func(*Stored) bool) error

	PutToken(ctx context.Context, t *Token) error
	Tokens(ctx context.Context) ([]*Token, error)
	DeleteToken(ctx context.Context, id string) error
}
