package dep

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"
)

// A Cursor is where the device sync of one server token stands.
type Cursor struct {
	// Cursor is Apple's opaque cursor: of the full fetch while Fetched is
	// false, then of the sync that follows it.
	Cursor  string `json:"cursor"`
	Fetched bool   `json:"fetched"`
	// FetchedUntil is the server's fetched_until of the last page.
	FetchedUntil time.Time `json:"fetched_until,omitzero"`
	UpdatedAt    time.Time `json:"updated_at,omitzero"`
}

// A CursorStore keeps the cursor of each server token by name.
type CursorStore interface {
	// Cursor returns the stored cursor, or a zero Cursor when there is
	// none.
	Cursor(ctx context.Context, name string) (*Cursor, error)
	PutCursor(ctx context.Context, name string, c *Cursor) error
}

// A DeviceHandler stores a page of devices of a server token. Fetched
// devices have no OpType; synced ones are added, modified or deleted. It
// must be idempotent: a page whose cursor was not stored (a crash) is
// delivered again.
type DeviceHandler func(ctx context.Context, token string, devices []Device) error

// DefaultPageSize is the page size the syncer asks for: Apple's maximum.
const DefaultPageSize = 1000

// DefaultMaxEchoes bounds how often in a row the syncer accepts a page
// whose cursor is the one it sent while more_to_follow says there is more.
const DefaultMaxEchoes = 3

// A Syncer brings one server token's devices into a DeviceHandler: a full
// fetch until exhausted, then syncs of the changes by cursor. The cursor is
// stored only after its page has been handled, so a crash loses no device;
// an expired or invalid cursor starts a full fetch again.
type Syncer struct {
	Name    string // the token's name, given to Handle and the store
	Client  *Client
	Cursors CursorStore
	Handle  DeviceHandler

	PageSize  int // DefaultPageSize when zero
	MaxEchoes int // DefaultMaxEchoes when zero
	Logger    *slog.Logger
}

// SyncStats counts what one Sync did.
type SyncStats struct {
	Full     bool `json:"full"` // a full fetch ran (from the start or resumed)
	Pages    int  `json:"pages"`
	Fetched  int  `json:"fetched"`
	Added    int  `json:"added"`
	Modified int  `json:"modified"`
	Deleted  int  `json:"deleted"`
	// Echoed is set when the round stopped because the server kept
	// answering with the cursor it was sent.
	Echoed bool `json:"echoed,omitempty"`
	// Restarted is set when an expired or invalid cursor restarted the
	// full fetch.
	Restarted bool `json:"restarted,omitempty"`
}

// ErrEchoedCursor is returned (with the stats so far) when the server
// keeps echoing the cursor it was sent with more_to_follow set.
var ErrEchoedCursor = errors.New("dep: the server keeps echoing the cursor; stopping this round")

func (s *Syncer) log() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.Default()
}

// Sync runs one round: the rest of the full fetch if it has not completed
// (all of it with full set), then the changes since the cursor.
func (s *Syncer) Sync(ctx context.Context, full bool) (*SyncStats, error) {
	st := &SyncStats{}
	cur, err := s.Cursors.Cursor(ctx, s.Name)
	if err != nil {
		return st, err
	}
	if full {
		cur = &Cursor{}
	}
	for restarts := 0; ; restarts++ {
		err := s.round(ctx, cur, st)
		if (errors.Is(err, ErrExpiredCursor) || errors.Is(err, ErrInvalidCursor)) && restarts == 0 {
			s.log().Warn("dep: cursor refused; fetching everything again", "token", s.Name, "err", err)
			st.Restarted = true
			cur = &Cursor{}
			continue
		}
		return st, err
	}
}

func (s *Syncer) round(ctx context.Context, cur *Cursor, st *SyncStats) error {
	limit := s.PageSize
	if limit <= 0 {
		limit = DefaultPageSize
	}
	maxEchoes := s.MaxEchoes
	if maxEchoes <= 0 {
		maxEchoes = DefaultMaxEchoes
	}
	echoes := 0
	for {
		var page *DeviceList
		var err error
		if !cur.Fetched {
			st.Full = true
			page, err = s.Client.FetchDevices(ctx, cur.Cursor, limit)
			if errors.Is(err, ErrExhaustedCursor) && cur.Cursor != "" {
				// The fetch had ended; its cursor now syncs.
				cur.Fetched = true
				if err := s.put(ctx, cur); err != nil {
					return err
				}
				continue
			}
		} else {
			page, err = s.Client.SyncDevices(ctx, cur.Cursor, limit)
		}
		if err != nil {
			return err
		}
		if err := s.Handle(ctx, s.Name, page.Devices); err != nil {
			return fmt.Errorf("dep: storing %d devices of %s: %w", len(page.Devices), s.Name, err)
		}
		st.Pages++
		for _, d := range page.Devices {
			switch d.OpType {
			case OpAdded:
				st.Added++
			case OpModified:
				st.Modified++
			case OpDeleted:
				st.Deleted++
			default:
				st.Fetched++
			}
		}
		echoed := page.MoreToFollow && page.Cursor == cur.Cursor
		if page.Cursor != "" {
			cur.Cursor = page.Cursor
		}
		cur.FetchedUntil = page.FetchedUntil
		if !cur.Fetched && !page.MoreToFollow {
			cur.Fetched = true
		}
		if err := s.put(ctx, cur); err != nil {
			return err
		}
		if !page.MoreToFollow {
			return nil
		}
		if echoed {
			if echoes++; echoes >= maxEchoes {
				s.log().Warn("dep: server echoed the cursor with more_to_follow; stopping until the next round",
					"token", s.Name, "echoes", echoes)
				st.Echoed = true
				return ErrEchoedCursor
			}
		} else {
			echoes = 0
		}
	}
}

func (s *Syncer) put(ctx context.Context, cur *Cursor) error {
	cur.UpdatedAt = time.Now().UTC()
	if err := s.Cursors.PutCursor(ctx, s.Name, cur); err != nil {
		return fmt.Errorf("dep: storing the cursor of %s: %w", s.Name, err)
	}
	return nil
}

// Run syncs every interval, and at once whenever a value arrives on now
// (true for a full fetch), until ctx is done. Errors are logged.
func (s *Syncer) Run(ctx context.Context, interval time.Duration, now <-chan bool) {
	t := time.NewTicker(interval)
	defer t.Stop()
	full := false
	for {
		start := time.Now()
		st, err := s.Sync(ctx, full)
		if err != nil && ctx.Err() == nil {
			s.log().Error("dep: sync", "token", s.Name, "err", err, "stats", st)
		} else if err == nil {
			s.log().Info("dep: synced", "token", s.Name, "took", time.Since(start), "stats", st)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			full = false
		case full = <-now:
		}
	}
}

// ErrNotFound is returned by a Store for an unknown token.
var ErrNotFound = errors.New("dep: not found")

// A Token is a server token as a server keeps it: its name, credentials
// and where to call, with what the server does with its devices.
type Token struct {
	Name    string       `json:"name"`
	OAuth   OAuth1Tokens `json:"oauth"`
	BaseURL string       `json:"base_url,omitempty"` // DefaultBaseURL when empty
	// DefaultProfile is the UUID of the ADE profile assigned to new
	// devices; none when empty.
	DefaultProfile string `json:"default_profile,omitempty"`
	// Group, when set, is a group the token's devices join.
	Group     string    `json:"group,omitempty"`
	Account   *Account  `json:"account,omitempty"` // as GET /account said at upload
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// A Store keeps server tokens and their cursors.
type Store interface {
	CursorStore
	// PutToken stores a token by name, replacing one of that name.
	PutToken(ctx context.Context, t *Token) error
	// Token returns the token with a name, or ErrNotFound.
	Token(ctx context.Context, name string) (*Token, error)
	// Tokens calls fn for each token in name order until fn returns false.
	Tokens(ctx context.Context, fn func(*Token) bool) error
}
