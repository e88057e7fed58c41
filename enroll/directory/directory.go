// Package directory mirrors identity providers into Custody and offboards
// the users they deactivate.
//
// An identity provider's users become enroll.Users (keyed by email, linked
// to the provider's id so a changed address follows the same person), its
// groups become Custody groups keyed "SOURCE:ID" (so a renamed group keeps
// its assignments), and membership drives the assignments of package
// enroll: a user who joins a group gets its profiles, commands and Android
// policy on every enrolled device, and a user who leaves it has its
// profiles removed. SCIM 2.0 (package scim, through SCIMChanged) pushes
// changes as they happen; Google Workspace is pulled (FetchGoogle, then
// Sync).
//
// A user the provider deactivates (SCIM active=false or DELETE, suspended
// in Google) is offboarded: after a grace period an administrator may
// cancel, and that reactivating the user cancels, corporate devices are
// erased (Apple EraseDevice, Android devices.delete) and personal ones
// unmanaged (the MDM profile and all it installed removed; the Android
// work profile deleted). Each step is in the devices' histories, so
// `custody trace` shows the provider's event that started it, and in the
// audit log.
package directory

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/custodymdm/custody/enroll"
)

// A Directory applies what identity providers say to Custody.
type Directory struct {
	Lifecycle *enroll.Lifecycle
	// Android returns the Android management in use, nil without one
	// (it may be bound while the server runs); nil Android is none.
	Android func() *enroll.Android
	Store   Store
	Logger  *slog.Logger
	Now     func() time.Time

	mu   sync.Mutex // serialises changes
	wake chan struct{}
	once sync.Once
}

func (d *Directory) log() *slog.Logger {
	if d.Logger != nil {
		return d.Logger
	}
	return slog.Default()
}

func (d *Directory) android() *enroll.Android {
	if d.Android == nil {
		return nil
	}
	return d.Android()
}

func (d *Directory) now() time.Time {
	if d.Now != nil {
		return d.Now().UTC()
	}
	return time.Now().UTC()
}

// Stats count what a change did.
type Stats struct {
	Created     int `json:"created"`
	Updated     int `json:"updated"`
	Unchanged   int `json:"unchanged"`
	Skipped     int `json:"skipped"` // no usable email, or outside the scope
	Unlinked    int `json:"unlinked"`
	Deactivated int `json:"deactivated"`
	Reactivated int `json:"reactivated"`
	Groups      int `json:"groups"`
	Devices     int `json:"devices"` // devices whose assignments or policy changed
}

// scope decides which groups and people are mirrored.
type scope struct {
	all    bool
	groups map[string]bool // keys in scope
}

func (d *Directory) scope(ctx context.Context, source string) (*scope, error) {
	st, err := d.Store.Settings(ctx)
	if err != nil {
		return nil, err
	}
	if len(st.Scope) == 0 {
		return &scope{all: true}, nil
	}
	want := map[string]bool{}
	for _, s := range st.Scope {
		want[strings.ToLower(s)] = true
	}
	sc := &scope{groups: map[string]bool{}}
	err = d.Store.Groups(ctx, func(g *GroupRecord) bool {
		if g.Source == source && (want[strings.ToLower(g.Key)] || want[strings.ToLower(g.Name)]) {
			sc.groups[g.Key] = true
		}
		return true
	})
	return sc, err
}

// keys returns the Custody groups of a person's groups that are in scope.
func (sc *scope) keys(source string, ids []string) []string {
	var out []string
	for _, id := range ids {
		if k := GroupKey(source, id); sc.all || sc.groups[k] {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// PutGroups records the provider's groups (their current names) as
// Custody groups. A group outside the scope is not recorded.
func (d *Directory) PutGroups(ctx context.Context, source string, groups []Group, actor string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.putGroups(ctx, source, groups, actor)
}

func (d *Directory) putGroups(ctx context.Context, source string, groups []Group, actor string) error {
	have := map[string]*GroupRecord{}
	if err := d.Store.Groups(ctx, func(g *GroupRecord) bool { have[g.Key] = g; return true }); err != nil {
		return err
	}
	st, err := d.Store.Settings(ctx)
	if err != nil {
		return err
	}
	now := d.now()
	var audit []*AuditEntry
	for _, g := range groups {
		key := GroupKey(source, g.ID)
		if !inScope(st.Scope, key, g.Name) {
			continue
		}
		old := have[key]
		if old != nil && old.Name == g.Name {
			continue
		}
		if err := d.Store.PutGroup(ctx, &GroupRecord{Key: key, Source: source, ID: g.ID, Name: g.Name, UpdatedAt: now}); err != nil {
			return err
		}
		if old == nil {
			audit = append(audit, &AuditEntry{At: now, Actor: actor, Action: "group-created", Subject: key, Detail: g.Name})
		} else {
			audit = append(audit, &AuditEntry{At: now, Actor: actor, Action: "group-renamed", Subject: key, Detail: old.Name + " → " + g.Name})
		}
	}
	return d.Store.Audit(ctx, audit...)
}

func inScope(scope []string, key, name string) bool {
	if len(scope) == 0 {
		return true
	}
	for _, s := range scope {
		if strings.EqualFold(s, key) || strings.EqualFold(s, name) {
			return true
		}
	}
	return false
}

// RemoveGroup forgets a group the provider deleted. Its members must have
// been applied without it already (they leave it through Apply).
func (d *Directory) RemoveGroup(ctx context.Context, source, id, actor string) error {
	key := GroupKey(source, id)
	err := d.Store.DeleteGroup(ctx, key)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	return d.Store.Audit(ctx, &AuditEntry{At: d.now(), Actor: actor, Action: "group-deleted", Subject: key})
}

// Apply brings Custody in line with people as the provider has them now:
// each becomes (or updates) the Custody user of their email with their
// groups in scope; a changed email moves the user and their devices to
// the new address; a person deactivated starts offboarding and one
// reactivated cancels it; the devices of people whose groups changed get
// their new groups' assignments and lose the profiles of groups left.
func (d *Directory) Apply(ctx context.Context, source string, people []*Person, actor string) (*Stats, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	sc, err := d.scope(ctx, source)
	if err != nil {
		return nil, err
	}
	stats := &Stats{}
	var regrouped []string
	pd := &pending{links: map[string]string{}}
	for i, p := range people {
		changed, err := d.applyOne(ctx, source, p, sc, actor, stats, pd)
		if err != nil {
			return stats, fmt.Errorf("directory: %s user %s: %w", source, p.ID, err)
		}
		regrouped = append(regrouped, changed...)
		if i%500 == 499 {
			if err := d.flush(ctx, pd); err != nil {
				return stats, err
			}
		}
	}
	if err := d.flush(ctx, pd); err != nil {
		return stats, err
	}
	if err := d.refresh(ctx, regrouped, stats); err != nil {
		return stats, err
	}
	return stats, nil
}

// pending are the links and audit entries of an Apply not yet written:
// written together, a person costs one write (their user) rather than
// three.
type pending struct {
	links map[string]string
	audit []*AuditEntry
}

// flush writes what is pending.
func (d *Directory) flush(ctx context.Context, pd *pending) error {
	if len(pd.links) > 0 {
		if err := d.Store.SetLinks(ctx, pd.links); err != nil {
			return err
		}
		clear(pd.links)
	}
	err := d.Store.Audit(ctx, pd.audit...)
	pd.audit = nil
	return err
}

// applyOne applies one person and returns the emails whose groups
// changed. What it does beyond the person's user is written before any
// offboarding, move or unlinking, and otherwise left in pd.
func (d *Directory) applyOne(ctx context.Context, source string, p *Person, sc *scope, actor string, stats *Stats, pd *pending) ([]string, error) {
	link := source + ":" + p.ID
	linked, ok := pd.links[link]
	if !ok {
		var err error
		if linked, err = d.Store.Link(ctx, link); err != nil {
			return nil, err
		}
	}
	groups := sc.keys(source, p.Groups)
	if !sc.all && len(groups) == 0 {
		// Outside the scope: not (or no longer) mirrored.
		if linked == "" {
			stats.Skipped++
			return nil, nil
		}
		stats.Unlinked++
		if err := d.flush(ctx, pd); err != nil {
			return nil, err
		}
		return d.unlink(ctx, source, link, linked, actor, "left the sync scope")
	}
	email, err := enroll.NormalizeEmail(p.Email)
	if err != nil {
		stats.Skipped++
		d.log().Warn("directory: user without a usable email skipped", "source", source, "id", p.ID, "email", p.Email)
		return nil, nil
	}
	var touched []string
	if linked != "" && linked != email {
		if err := d.flush(ctx, pd); err != nil {
			return nil, err
		}
		moved, err := d.move(ctx, source, linked, email, actor)
		if err != nil {
			return nil, err
		}
		touched = append(touched, moved...)
	}
	now := d.now()
	next := func(u *enroll.User) *enroll.User {
		var n *enroll.User
		if u == nil {
			n = &enroll.User{Email: email, CreatedAt: now}
		} else {
			n = u.Clone()
		}
		if p.Name != "" {
			n.Name = p.Name
		}
		if p.Mobile != "" {
			n.Mobile = p.Mobile
		}
		n.Directory = link
		n.Groups = withSourceGroups(n.Groups, source, groups)
		switch {
		case !p.Active && n.Deactivated.IsZero():
			n.Deactivated = now
		case p.Active:
			n.Deactivated = time.Time{}
		}
		return n
	}
	// Most people of a sync have not changed: read before writing.
	if u, err := d.Lifecycle.Records.User(ctx, email); err == nil && linked == email && sameUser(u, next(u)) {
		stats.Unchanged++
		return touched, nil
	} else if err != nil && !errors.Is(err, enroll.ErrNotFound) {
		return nil, err
	}
	var before *enroll.User
	after, err := d.Lifecycle.Records.UpdateUser(ctx, email, func(u *enroll.User) (*enroll.User, error) {
		before = u
		n := next(u)
		if u != nil && sameUser(u, n) {
			return nil, nil
		}
		n.UpdatedAt = now
		return n, nil
	})
	if err != nil {
		return nil, err
	}
	if linked != email {
		pd.links[link] = email
	}
	entry := func(action, detail string) {
		pd.audit = append(pd.audit, &AuditEntry{At: now, Actor: actor, Action: action, Subject: email, Detail: detail})
	}
	switch {
	case before == nil:
		stats.Created++
		entry("user-created", link+" groups "+strings.Join(groups, ","))
	case sameUser(before, after):
		stats.Unchanged++
	default:
		stats.Updated++
		if !slices.Equal(sourceGroups(before.Groups, source), groups) {
			entry("user-groups", fmt.Sprintf("%s → %s", strings.Join(sourceGroups(before.Groups, source), ","), strings.Join(groups, ",")))
		}
	}
	if before == nil || !slices.Equal(sourceGroups(before.Groups, source), groups) {
		touched = append(touched, email)
	}
	wasActive := before == nil || before.Deactivated.IsZero()
	switch {
	case wasActive && !p.Active:
		stats.Deactivated++
		entry("user-deactivated", link)
		if err := d.flush(ctx, pd); err != nil {
			return nil, err
		}
		if _, err := d.offboard(ctx, email, link, fmt.Sprintf("%s: %s deactivated (%s)", source, email, actor), actor); err != nil {
			return nil, err
		}
	case !wasActive && p.Active:
		stats.Reactivated++
		entry("user-reactivated", link)
		if err := d.flush(ctx, pd); err != nil {
			return nil, err
		}
		if err := d.cancelFor(ctx, email, actor, "reactivated in "+source); err != nil {
			return nil, err
		}
	}
	return touched, nil
}

// Remove handles a person the provider deleted: their user leaves the
// provider's groups and is offboarded.
func (d *Directory) Remove(ctx context.Context, source, id, actor string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	link := source + ":" + id
	email, err := d.Store.Link(ctx, link)
	if err != nil || email == "" {
		return err
	}
	now := d.now()
	u, err := d.Lifecycle.Records.UpdateUser(ctx, email, func(u *enroll.User) (*enroll.User, error) {
		if u == nil {
			return nil, nil
		}
		u = u.Clone()
		if u.Deactivated.IsZero() {
			u.Deactivated = now
		}
		u.UpdatedAt = now
		return u, nil
	})
	if err != nil {
		return err
	}
	if err := d.Store.Audit(ctx, &AuditEntry{At: now, Actor: actor, Action: "user-deleted", Subject: email, Detail: link}); err != nil {
		return err
	}
	if u != nil {
		if _, err := d.offboard(ctx, email, link, fmt.Sprintf("%s: %s deleted (%s)", source, email, actor), actor); err != nil {
			return err
		}
	}
	touched, err := d.unlink(ctx, source, link, email, actor, "deleted")
	if err != nil {
		return err
	}
	return d.refresh(ctx, touched, &Stats{})
}

// unlink takes a user out of the provider's groups and forgets the link;
// the user and its devices stay.
func (d *Directory) unlink(ctx context.Context, source, link, email, actor, why string) ([]string, error) {
	_, err := d.Lifecycle.Records.UpdateUser(ctx, email, func(u *enroll.User) (*enroll.User, error) {
		if u == nil {
			return nil, nil
		}
		u = u.Clone()
		u.Groups = withSourceGroups(u.Groups, source, nil)
		if u.Directory == link {
			u.Directory = ""
		}
		u.UpdatedAt = d.now()
		return u, nil
	})
	if err != nil {
		return nil, err
	}
	if err := d.Store.SetLinks(ctx, map[string]string{link: ""}); err != nil {
		return nil, err
	}
	return []string{email}, d.Store.Audit(ctx, &AuditEntry{At: d.now(), Actor: actor, Action: "user-unlinked", Subject: email, Detail: link + " " + why})
}

// move gives the devices of a user whose email changed to the new
// address, and leaves the old user without the provider's groups.
func (d *Directory) move(ctx context.Context, source, from, to, actor string) ([]string, error) {
	old, err := d.Lifecycle.Records.User(ctx, from)
	if errors.Is(err, enroll.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	now := d.now()
	// The new user starts with the old one's own groups and details.
	_, err = d.Lifecycle.Records.UpdateUser(ctx, to, func(u *enroll.User) (*enroll.User, error) {
		if u != nil {
			return nil, nil
		}
		n := old.Clone()
		n.Email, n.Groups, n.CreatedAt, n.UpdatedAt = to, withSourceGroups(old.Groups, source, nil), now, now
		return n, nil
	})
	if err != nil {
		return nil, err
	}
	serials, err := d.Lifecycle.DevicesOf(ctx, []string{from})
	if err != nil {
		return nil, err
	}
	err = d.Lifecycle.Records.UpdateRecords(ctx, serials, func(_ string, r *enroll.Record) (*enroll.Record, error) {
		if r == nil || r.UserEmail != from {
			return nil, nil
		}
		r = r.Clone()
		r.UserEmail, r.UpdatedAt = to, now
		return r, nil
	})
	if err != nil {
		return nil, err
	}
	_, err = d.Lifecycle.Records.UpdateUser(ctx, from, func(u *enroll.User) (*enroll.User, error) {
		if u == nil {
			return nil, nil
		}
		u = u.Clone()
		u.Groups, u.Directory, u.UpdatedAt = withSourceGroups(u.Groups, source, nil), "", now
		return u, nil
	})
	if err != nil {
		return nil, err
	}
	return []string{from, to}, d.Store.Audit(ctx, &AuditEntry{At: now, Actor: actor, Action: "user-email-changed", Subject: to,
		Detail: fmt.Sprintf("from %s, %d devices moved", from, len(serials))})
}

// refresh re-applies assignments (and Android policies) to the devices of
// users whose groups changed.
func (d *Directory) refresh(ctx context.Context, emails []string, stats *Stats) error {
	if len(emails) == 0 {
		return nil
	}
	slices.Sort(emails)
	serials, err := d.Lifecycle.DevicesOf(ctx, slices.Compact(emails))
	if err != nil || len(serials) == 0 {
		return err
	}
	queued, err := d.Lifecycle.Refresh(ctx, serials)
	if err != nil {
		return err
	}
	stats.Devices += len(queued)
	if a := d.android(); a != nil {
		moved, err := a.Refresh(ctx, serials)
		stats.Devices += moved
		if err != nil {
			return err
		}
	}
	return nil
}

// Sync applies a whole snapshot of a provider: its groups, then its
// people. A person linked before but absent from the snapshot was deleted
// when absentDeleted (a SCIM store holds everyone the provider pushed),
// and is unlinked otherwise (Google lists only the scope asked for).
// Groups absent from the snapshot are forgotten.
func (d *Directory) Sync(ctx context.Context, source string, people []*Person, groups []Group, absentDeleted bool, actor string) (*Stats, error) {
	if err := d.PutGroups(ctx, source, groups, actor); err != nil {
		return nil, err
	}
	stats, err := d.Apply(ctx, source, people, actor)
	if err != nil {
		return stats, err
	}
	present := map[string]bool{}
	for _, p := range people {
		present[source+":"+p.ID] = true
	}
	var gone []string
	err = d.Lifecycle.Records.Users(ctx, func(u *enroll.User) bool {
		if strings.HasPrefix(u.Directory, source+":") && !present[u.Directory] {
			gone = append(gone, u.Directory)
		}
		return true
	})
	if err != nil {
		return stats, err
	}
	for _, link := range gone {
		id := strings.TrimPrefix(link, source+":")
		if absentDeleted {
			err = d.Remove(ctx, source, id, actor)
		} else {
			err = d.unlinkAbsent(ctx, source, link, actor, stats)
		}
		if err != nil {
			return stats, err
		}
	}
	stats.Groups = len(groups)
	keep := map[string]bool{}
	for _, g := range groups {
		keep[GroupKey(source, g.ID)] = true
	}
	var stale []string
	err = d.Store.Groups(ctx, func(g *GroupRecord) bool {
		if g.Source == source && !keep[g.Key] {
			stale = append(stale, g.ID)
		}
		return true
	})
	if err != nil {
		return stats, err
	}
	for _, id := range stale {
		if err := d.RemoveGroup(ctx, source, id, actor); err != nil {
			return stats, err
		}
	}
	return stats, nil
}

// unlinkAbsent unlinks a person a snapshot no longer has.
func (d *Directory) unlinkAbsent(ctx context.Context, source, link, actor string, stats *Stats) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	email, err := d.Store.Link(ctx, link)
	if err != nil || email == "" {
		return err
	}
	touched, err := d.unlink(ctx, source, link, email, actor, "no longer in the sync")
	if err != nil {
		return err
	}
	stats.Unlinked++
	return d.refresh(ctx, touched, stats)
}

// withSourceGroups returns groups with those of a source replaced by keys.
func withSourceGroups(groups []string, source string, keys []string) []string {
	out := slices.DeleteFunc(slices.Clone(groups), func(g string) bool { return strings.HasPrefix(g, source+":") })
	return append(out, keys...)
}

// sourceGroups returns a source's groups among groups, sorted.
func sourceGroups(groups []string, source string) []string {
	var out []string
	for _, g := range groups {
		if strings.HasPrefix(g, source+":") {
			out = append(out, g)
		}
	}
	slices.Sort(out)
	return out
}

func sameUser(a, b *enroll.User) bool {
	return a.Name == b.Name && a.Mobile == b.Mobile && a.Directory == b.Directory &&
		a.Deactivated.Equal(b.Deactivated) && slices.Equal(a.Groups, b.Groups)
}
