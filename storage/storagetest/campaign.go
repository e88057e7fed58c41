package storagetest

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/custodymdm/custody/enroll"
	"github.com/custodymdm/custody/enroll/campaign"
)

// RunCampaign runs the conformance tests of a campaign.Store.
func RunCampaign(t *testing.T, newStore func(t *testing.T) campaign.Store) {
	t.Run("Rings", func(t *testing.T) { testRings(t, newStore(t)) })
	t.Run("JobsAndDeliveries", func(t *testing.T) { testJobsAndDeliveries(t, newStore(t)) })
	t.Run("DeleteRing", func(t *testing.T) { testDeleteRing(t, newStore(t)) })
	t.Run("CancelledContext", func(t *testing.T) { testCampaignCancelled(t, newStore(t)) })
}

func ringNames(t *testing.T, s campaign.Store) []string {
	t.Helper()
	var names []string
	if err := s.Rings(context.Background(), func(r *campaign.Ring) bool { names = append(names, r.Name); return true }); err != nil {
		t.Fatal(err)
	}
	return names
}

func testRings(t *testing.T, s campaign.Store) {
	ctx := context.Background()
	for _, name := range []string{"ring-b", "ring-a", "ring-a.1"} {
		r := &campaign.Ring{Name: name, Group: name, Deadline: t0.Add(72 * 3600e9), CreatedAt: t0}
		if err := s.CreateRing(ctx, r); err != nil {
			t.Fatalf("CreateRing %s: %v", name, err)
		}
	}
	if err := s.CreateRing(ctx, &campaign.Ring{Name: "ring-a", Group: "other"}); !errors.Is(err, campaign.ErrExists) {
		t.Errorf("CreateRing of an existing name: %v, want ErrExists", err)
	}
	if got := fmt.Sprint(ringNames(t, s)); got != "[ring-a ring-a.1 ring-b]" {
		t.Errorf("Rings: %s, want name order", got)
	}
	r, err := s.Ring(ctx, "ring-a")
	if err != nil || r.Group != "ring-a" || !r.Deadline.Equal(t0.Add(72*3600e9)) {
		t.Fatalf("Ring: %+v, %v", r, err)
	}
	if _, err := s.Ring(ctx, "nope"); !errors.Is(err, enroll.ErrNotFound) {
		t.Errorf("Ring(nope): %v, want ErrNotFound", err)
	}
	r, err = s.UpdateRing(ctx, "ring-a", func(r *campaign.Ring) (*campaign.Ring, error) {
		r.DeadlineActed = t0
		return r, nil
	})
	if err != nil || !r.DeadlineActed.Equal(t0) {
		t.Fatalf("UpdateRing: %+v, %v", r, err)
	}
	if r, _ := s.Ring(ctx, "ring-a"); !r.DeadlineActed.Equal(t0) {
		t.Errorf("UpdateRing not stored: %+v", r)
	}
	if _, err := s.UpdateRing(ctx, "nope", func(r *campaign.Ring) (*campaign.Ring, error) { return r, nil }); !errors.Is(err, enroll.ErrNotFound) {
		t.Errorf("UpdateRing(nope): %v, want ErrNotFound", err)
	}
}

func targets(n int, prefix string) []campaign.Target {
	out := make([]campaign.Target, n)
	for i := range out {
		out[i] = campaign.Target{Ref: enroll.RecordRef(fmt.Sprintf("%s%04d", prefix, i)), Email: fmt.Sprintf("u%d@example.com", i)}
	}
	return out
}

func deliveries(t *testing.T, s campaign.Store, ring string, job int) []*campaign.Delivery {
	t.Helper()
	var out []*campaign.Delivery
	if err := s.Deliveries(context.Background(), ring, job, func(d *campaign.Delivery) bool { out = append(out, d); return true }); err != nil {
		t.Fatal(err)
	}
	return out
}

func testJobsAndDeliveries(t *testing.T, s campaign.Store) {
	ctx := context.Background()
	for _, name := range []string{"r1", "r1.x", "r2"} {
		if err := s.CreateRing(ctx, &campaign.Ring{Name: name, Group: "g"}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.CreateJob(ctx, &campaign.Job{Ring: "nope", Kind: campaign.KindInvitation}, targets(1, "X")); !errors.Is(err, enroll.ErrNotFound) {
		t.Errorf("CreateJob for a missing ring: %v, want ErrNotFound", err)
	}
	// Jobs are numbered per ring; deliveries from 1 in the order given.
	var ids []string
	for _, ring := range []string{"r1", "r1.x", "r1", "r2", "r1"} {
		j, err := s.CreateJob(ctx, &campaign.Job{Ring: ring, Kind: campaign.KindInvitation, State: campaign.JobQueued, Created: t0}, targets(300, ring))
		if err != nil {
			t.Fatal(err)
		}
		if j.Total != 300 {
			t.Errorf("job total %d, want 300", j.Total)
		}
		ids = append(ids, fmt.Sprintf("%s/%d", j.Ring, j.ID))
	}
	if got := fmt.Sprint(ids); got != "[r1/1 r1.x/1 r1/2 r2/1 r1/3]" {
		t.Errorf("job numbers %s", got)
	}
	var listed []string
	s.Jobs(ctx, "r1", func(j *campaign.Job) bool { listed = append(listed, fmt.Sprint(j.ID)); return true })
	if got := fmt.Sprint(listed); got != "[1 2 3]" {
		t.Errorf("Jobs(r1): %s", got)
	}
	listed = nil
	s.Jobs(ctx, "", func(j *campaign.Job) bool { listed = append(listed, fmt.Sprintf("%s/%d", j.Ring, j.ID)); return true })
	if len(listed) != 5 {
		t.Errorf("Jobs(all): %v", listed)
	}
	ds := deliveries(t, s, "r1", 2)
	if len(ds) != 300 || ds[0].Seq != 1 || ds[299].Seq != 300 || ds[0].Job != 2 || ds[0].Ring != "r1" || ds[0].Target.Ref != "record:r10000" || ds[299].Target.Ref != "record:r10299" {
		t.Fatalf("Deliveries(r1, 2): %d, first %+v", len(ds), ds[0])
	}
	if all := deliveries(t, s, "r1", 0); len(all) != 900 || all[0].Job != 1 || all[899].Job != 3 {
		t.Errorf("Deliveries(r1, 0): %d", len(all))
	}
	// A step writes two deliveries at once.
	a, b := ds[0], ds[1]
	a.State, a.Sends = campaign.DeliverySent, 1
	b.State, b.Sends = campaign.DeliverySending, 1
	if err := s.PutDeliveries(ctx, a, b); err != nil {
		t.Fatal(err)
	}
	ds = deliveries(t, s, "r1", 2)
	if ds[0].State != campaign.DeliverySent || ds[1].State != campaign.DeliverySending || ds[2].State != campaign.DeliveryPending {
		t.Errorf("after PutDeliveries: %q %q %q", ds[0].State, ds[1].State, ds[2].State)
	}
	j, err := s.UpdateJob(ctx, "r1", 2, func(j *campaign.Job) (*campaign.Job, error) {
		j.State = campaign.JobPaused
		return j, nil
	})
	if err != nil || j.State != campaign.JobPaused || j.ID != 2 {
		t.Fatalf("UpdateJob: %+v, %v", j, err)
	}
	if j, err := s.UpdateJob(ctx, "r1", 9, func(j *campaign.Job) (*campaign.Job, error) { return nil, nil }); err != nil || j != nil {
		t.Errorf("UpdateJob of a missing job: %+v, %v (want nil, nil: fn saw nil)", j, err)
	}
}

func testDeleteRing(t *testing.T, s campaign.Store) {
	ctx := context.Background()
	for _, name := range []string{"a", "a.b", "b"} {
		if err := s.CreateRing(ctx, &campaign.Ring{Name: name, Group: "g"}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.CreateJob(ctx, &campaign.Job{Ring: name, Kind: campaign.KindReminder}, targets(10, name)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.DeleteRing(ctx, "a"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteRing(ctx, "a"); !errors.Is(err, enroll.ErrNotFound) {
		t.Errorf("DeleteRing twice: %v, want ErrNotFound", err)
	}
	if got := fmt.Sprint(ringNames(t, s)); got != "[a.b b]" {
		t.Errorf("rings after delete: %s", got)
	}
	if n := len(deliveries(t, s, "a", 0)); n != 0 {
		t.Errorf("%d deliveries of a deleted ring", n)
	}
	if n := len(deliveries(t, s, "a.b", 0)); n != 10 {
		t.Errorf("ring a.b lost deliveries: %d", n)
	}
	// A ring created again under the name starts its jobs from 1.
	s.CreateRing(ctx, &campaign.Ring{Name: "a", Group: "g"})
	if j, err := s.CreateJob(ctx, &campaign.Job{Ring: "a", Kind: campaign.KindInvitation}, targets(1, "a")); err != nil || j.ID != 1 {
		t.Errorf("job of a re-created ring: %+v, %v", j, err)
	}
}

func testCampaignCancelled(t *testing.T, s campaign.Store) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.CreateRing(ctx, &campaign.Ring{Name: "x", Group: "g"}); !errors.Is(err, context.Canceled) {
		t.Errorf("CreateRing: %v", err)
	}
	if _, err := s.Ring(ctx, "x"); !errors.Is(err, context.Canceled) {
		t.Errorf("Ring: %v", err)
	}
	if err := s.PutDeliveries(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("PutDeliveries: %v", err)
	}
}
