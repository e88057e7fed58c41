package directory

import (
	"context"
	"errors"
	"strings"

	"github.com/custodymdm/custody/enroll/scim"
)

// SCIMChanged returns the Changed hook of a scim.Server keeping its
// resources in store: each user or group change is mirrored at once. A
// change the hook could not apply is logged, and SyncSCIM (run when the
// server starts) repairs it.
func (d *Directory) SCIMChanged(store scim.Store) func(ctx context.Context, before, after *scim.Stored) {
	return func(ctx context.Context, before, after *scim.Stored) {
		if err := d.scimChanged(ctx, store, before, after); err != nil {
			d.log().Error("directory: mirroring a SCIM change", "err", err)
		}
	}
}

func scimActor(ctx context.Context) string {
	if name := scim.TokenName(ctx); name != "" {
		return "scim token " + name
	}
	return "scim"
}

func (d *Directory) scimChanged(ctx context.Context, store scim.Store, before, after *scim.Stored) error {
	actor := scimActor(ctx)
	st := after
	if st == nil {
		st = before
	}
	switch {
	case st.Type == scim.UserType.Name && after == nil:
		return d.Remove(ctx, SourceSCIM, st.ID, actor)
	case st.Type == scim.UserType.Name:
		memberOf, err := scimMembership(ctx, store)
		if err != nil {
			return err
		}
		_, err = d.Apply(ctx, SourceSCIM, []*Person{scimPerson(after, memberOf[after.ID])}, actor)
		return err
	case st.Type == scim.GroupType.Name:
		if after != nil {
			if err := d.PutGroups(ctx, SourceSCIM, []Group{scimGroup(after)}, actor); err != nil {
				return err
			}
		}
		// The members who joined or left.
		was, is := members(before), members(after)
		var ids []string
		for id := range was {
			if !is[id] {
				ids = append(ids, id)
			}
		}
		for id := range is {
			if !was[id] {
				ids = append(ids, id)
			}
		}
		if len(ids) > 0 {
			memberOf, err := scimMembership(ctx, store)
			if err != nil {
				return err
			}
			var people []*Person
			for _, id := range ids {
				u, err := store.Get(ctx, scim.UserType.Name, id)
				if errors.Is(err, scim.ErrNotFound) {
					continue // deleted: Remove handles it
				}
				if err != nil {
					return err
				}
				people = append(people, scimPerson(u, memberOf[id]))
			}
			if _, err := d.Apply(ctx, SourceSCIM, people, actor); err != nil {
				return err
			}
		}
		if after == nil {
			return d.RemoveGroup(ctx, SourceSCIM, st.ID, actor)
		}
	}
	return nil
}

// SyncSCIM applies everything the SCIM store holds: every group and user,
// and users that are no longer there are handled as deleted.
func (d *Directory) SyncSCIM(ctx context.Context, store scim.Store, actor string) (*Stats, error) {
	memberOf, err := scimMembership(ctx, store)
	if err != nil {
		return nil, err
	}
	var groups []Group
	err = store.List(ctx, scim.GroupType.Name, func(g *scim.Stored) bool {
		groups = append(groups, scimGroup(g))
		return true
	})
	if err != nil {
		return nil, err
	}
	var people []*Person
	err = store.List(ctx, scim.UserType.Name, func(u *scim.Stored) bool {
		people = append(people, scimPerson(u, memberOf[u.ID]))
		return true
	})
	if err != nil {
		return nil, err
	}
	return d.Sync(ctx, SourceSCIM, people, groups, true, actor)
}

// scimMembership maps user ids to the ids of the groups they are members
// of.
func scimMembership(ctx context.Context, store scim.Store) (map[string][]string, error) {
	memberOf := map[string][]string{}
	err := store.List(ctx, scim.GroupType.Name, func(g *scim.Stored) bool {
		for id := range members(g) {
			memberOf[id] = append(memberOf[id], g.ID)
		}
		return true
	})
	return memberOf, err
}

// members returns the ids of a SCIM group's members.
func members(g *scim.Stored) map[string]bool {
	out := map[string]bool{}
	if g == nil {
		return out
	}
	list, _ := g.Attrs["members"].([]any)
	for _, m := range list {
		if mm, ok := m.(map[string]any); ok {
			if id, ok := mm["value"].(string); ok {
				out[id] = true
			}
		}
	}
	return out
}

func scimGroup(g *scim.Stored) Group {
	name, _ := g.Attrs["displayName"].(string)
	return Group{ID: g.ID, Name: name}
}

// scimPerson reads a SCIM user: its primary email (else its work email,
// else its first, else a userName that is an address), its formatted
// name (else given and family names, else displayName), its mobile
// number, and active (true when absent).
func scimPerson(u *scim.Stored, groups []string) *Person {
	a := u.Attrs
	p := &Person{ID: u.ID, Active: true, Groups: groups}
	if active, ok := a["active"].(bool); ok {
		p.Active = active
	}
	emails := multi(a["emails"])
	for _, pick := range []func(map[string]any) bool{
		func(e map[string]any) bool { return e["primary"] == true },
		func(e map[string]any) bool { return strings.EqualFold(str(e["type"]), "work") },
		func(map[string]any) bool { return true },
	} {
		for _, e := range emails {
			if p.Email == "" && pick(e) {
				p.Email = str(e["value"])
			}
		}
	}
	if userName := str(a["userName"]); p.Email == "" && strings.Contains(userName, "@") {
		p.Email = userName
	}
	name, _ := a["name"].(map[string]any)
	p.Name = str(name["formatted"])
	if p.Name == "" {
		p.Name = strings.TrimSpace(str(name["givenName"]) + " " + str(name["familyName"]))
	}
	if p.Name == "" {
		p.Name = str(a["displayName"])
	}
	for _, ph := range multi(a["phoneNumbers"]) {
		if p.Mobile == "" && strings.EqualFold(str(ph["type"]), "mobile") {
			p.Mobile = str(ph["value"])
		}
	}
	return p
}

func multi(v any) []map[string]any {
	list, _ := v.([]any)
	var out []map[string]any
	for _, x := range list {
		if m, ok := x.(map[string]any); ok {
			out = append(out, m)
		}
	}
	return out
}

func str(v any) string {
	s, _ := v.(string)
	return s
}
