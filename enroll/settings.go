package enroll

import (
	"context"
	"fmt"
	"slices"
	"strconv"
)

// Settings are the organisation's enrollment settings.
type Settings struct {
	// PreEnrolledOnly admits only devices with a record, enrolling with a
	// link minted for that record or its user; enrollment links and SCEP
	// challenges are then minted only for records and users.
	PreEnrolledOnly bool `json:"preenrolled_only"`
}

// A SettingsStore keeps the settings.
type SettingsStore interface {
	// Settings returns the stored settings, the zero Settings when none
	// have been stored.
	Settings(ctx context.Context) (*Settings, error)
	// UpdateSettings applies fn to the stored settings and stores the
	// result in one transaction, and returns it.
	UpdateSettings(ctx context.Context, fn func(*Settings) error) (*Settings, error)
}

// A setting is one named, typed field of Settings.
type setting struct {
	get func(*Settings) string
	set func(*Settings, string) error
}

// settingNames are the names administrators use (custody settings set).
var settingNames = map[string]setting{
	"enrollment.preenrolled-only": {
		get: func(s *Settings) string { return strconv.FormatBool(s.PreEnrolledOnly) },
		set: func(s *Settings, v string) (err error) { s.PreEnrolledOnly, err = parseBool(v); return err },
	},
}

func parseBool(v string) (bool, error) {
	switch squash(v) {
	case "true", "on", "yes", "1":
		return true, nil
	case "false", "off", "no", "0":
		return false, nil
	}
	return false, fmt.Errorf("%q is not a boolean (want true or false)", v)
}

// Set sets the setting called name from its text form.
func (s *Settings) Set(name, value string) error {
	st, ok := settingNames[name]
	if !ok {
		return fmt.Errorf("unknown setting %q (known: %v)", name, SettingNames())
	}
	if err := st.set(s, value); err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// Values returns every setting by name, in text form.
func (s *Settings) Values() map[string]string {
	m := make(map[string]string, len(settingNames))
	for name, st := range settingNames {
		m[name] = st.get(s)
	}
	return m
}

// SettingNames lists the settings' names in order.
func SettingNames() []string {
	names := make([]string, 0, len(settingNames))
	for n := range settingNames {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}
