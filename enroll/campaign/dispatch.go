package campaign

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/custodymdm/custody/enroll"
)

// A Link is what a message gives its target to enrol with.
type Link struct {
	URL string // to open on the device
	// QR is what the message's QR code holds (URL when empty): for a
	// company-owned Android device, the provisioning JSON.
	QR    string
	Token string // the token's ID (Apple) or name (Android), for the delivery
}

// Content is what messages are made of when a job runs: the renderers
// of invitations and of reminders.
type Content struct {
	Invitation, Reminder *Renderer
}

// Retry says how often, and how patiently, a message that failed for a
// temporary reason (a 4xx SMTP reply, a lost connection) is tried again.
type Retry struct {
	Attempts int           // tries in all, the first included
	Base     time.Duration // the wait before the second try, doubled for each next one (±25 %)
	Max      time.Duration // the longest wait
}

// DefaultRetry tries a message five times over about half a minute.
var DefaultRetry = Retry{Attempts: 5, Base: 2 * time.Second, Max: 30 * time.Second}

func (r Retry) wait(attempt int) time.Duration {
	d := r.Base << (attempt - 1)
	if d <= 0 || d > r.Max {
		d = r.Max
	}
	return d + time.Duration((rand.Float64()-0.5)*0.5*float64(d))
}

// Campaigns runs the jobs of rings: one at a time, in the order they were
// started, resuming on start whatever was under way when the process
// stopped; and acts on rings whose deadline has passed.
type Campaigns struct {
	Store     Store
	Lifecycle *enroll.Lifecycle

	// Link mints the enrollment link a message carries to a target,
	// valid for ttl.
	Link func(ctx context.Context, t *Target, ttl time.Duration) (*Link, error)
	// Open returns the sender of a channel with its current settings.
	Open func(ctx context.Context, channel string) (Sender, error)
	// Content returns the current templates.
	Content func(ctx context.Context) (*Content, error)

	Retry Retry // DefaultRetry when zero
	// Poll is how often Run looks in the store for work that another
	// server sharing it has queued or paused; a minute when zero.
	Poll time.Duration
	// Observe, when set, is told each message's outcome: "sent",
	// "failed" (refused for good), "deferred" (a temporary failure, to be
	// tried again).
	Observe func(channel, kind, outcome string)
	Logger  *slog.Logger
	Now     func() time.Time

	runMu   sync.Mutex // held by Run
	mu      sync.Mutex
	wake    chan struct{}
	current *Job          // the job running, if any
	stop    chan struct{} // closed to pause the current job
	stopped chan struct{} // closed when the current job's run returns
}

func (c *Campaigns) log() *slog.Logger {
	if c.Logger != nil {
		return c.Logger
	}
	return slog.Default()
}

func (c *Campaigns) now() time.Time {
	if c.Now != nil {
		return c.Now().UTC()
	}
	return time.Now().UTC()
}

func (c *Campaigns) poll() time.Duration {
	if c.Poll > 0 {
		return c.Poll
	}
	return time.Minute
}

// watchPause pauses the run of j (closes its stop) when the job is paused
// in the store by another server, looking every Poll until ctx ends.
func (c *Campaigns) watchPause(ctx context.Context, j *Job, stop chan struct{}) {
	t := time.NewTicker(c.poll())
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-stop:
			return
		case <-t.C:
		}
		paused := false
		err := c.Store.Jobs(ctx, j.Ring, func(x *Job) bool {
			if x.ID != j.ID {
				return true
			}
			paused = x.State == JobPaused
			return false
		})
		if err != nil || !paused {
			continue
		}
		c.mu.Lock()
		if c.stop == stop {
			close(stop)
			c.stop = nil
		}
		c.mu.Unlock()
		return
	}
}

func (c *Campaigns) retry() Retry {
	if c.Retry.Attempts > 0 {
		return c.Retry
	}
	return DefaultRetry
}

func (c *Campaigns) poke() {
	c.mu.Lock()
	if c.wake == nil {
		c.wake = make(chan struct{}, 1)
	}
	w := c.wake
	c.mu.Unlock()
	select {
	case w <- struct{}{}:
	default:
	}
}

// CreateRing validates and stores a new ring.
func (c *Campaigns) CreateRing(ctx context.Context, r *Ring) error {
	if r.Channel == "" {
		r.Channel = ChannelEmail
	}
	if r.CreatedAt.IsZero() {
		r.CreatedAt = c.now()
	}
	if err := r.Check(); err != nil {
		return err
	}
	if r.OverdueGroup != "" {
		if err := checkName(r.OverdueGroup); err != nil {
			return invalidf("overdue group: %v", err)
		}
	}
	return c.Store.CreateRing(ctx, r)
}

// DeleteRing deletes a ring with its jobs and deliveries; ErrBusy while
// one of its jobs is queued or running (pause it first).
func (c *Campaigns) DeleteRing(ctx context.Context, name string) error {
	var busy *Job
	err := c.Store.Jobs(ctx, name, func(j *Job) bool {
		if j.State == JobQueued || j.State == JobRunning {
			busy = j
		}
		return busy == nil
	})
	if err != nil {
		return err
	}
	if busy != nil {
		return fmt.Errorf("%w: ring %s has %s job %d %s; pause it first", ErrBusy, name, busy.Kind, busy.ID, busy.State)
	}
	return c.Store.DeleteRing(ctx, name)
}

// Options choose a job's targets.
type Options struct {
	// OnlyNotEnrolled limits a reminder to targets not enrolled.
	OnlyNotEnrolled bool `json:"only_not_enrolled,omitempty"`
	// RetryFailed invites again the targets whose invitation failed
	// permanently (after their address was corrected, say).
	RetryFailed bool `json:"retry_failed,omitempty"`
}

// Plan returns whom a new job of a kind would send to: for an
// invitation, the targets not enrolled that have not had one (or whose
// invitation failed, with RetryFailed); for a reminder, every target, or
// those not enrolled.
func (c *Campaigns) Plan(ctx context.Context, ring, kind string, o Options) (*Ring, []Target, error) {
	r, err := c.Store.Ring(ctx, ring)
	if err != nil {
		return nil, nil, err
	}
	if kind != KindInvitation && kind != KindReminder {
		return nil, nil, invalidf("job kind %q (want invitation or reminder)", kind)
	}
	p, err := RingProgress(ctx, c.Store, c.Lifecycle.Records, r, c.now())
	if err != nil {
		return nil, nil, err
	}
	var out []Target
	for _, t := range p.Targets {
		switch {
		case kind == KindReminder && (!o.OnlyNotEnrolled || t.State != StateEnrolled),
			kind == KindInvitation && (t.State == StatePreApproved || o.RetryFailed && t.State == StateFailed):
			out = append(out, t.Target)
		}
	}
	return r, out, nil
}

// Start starts a job of a kind for a ring, or resumes the ring's
// unfinished job of that kind; the job runs in Run. A ring with an
// unfinished job of the other kind is ErrBusy. With nothing to send it
// returns a job numbered 0 with no targets, and stores nothing.
func (c *Campaigns) Start(ctx context.Context, ring, kind string, o Options) (*Job, error) {
	var open *Job
	err := c.Store.Jobs(ctx, ring, func(j *Job) bool {
		if j.Unfinished() {
			open = j
		}
		return open == nil
	})
	if err != nil {
		return nil, err
	}
	if open != nil {
		if open.Kind != kind {
			return nil, fmt.Errorf("%w: ring %s has %s job %d %s; finish it first", ErrBusy, ring, open.Kind, open.ID, open.State)
		}
		return c.Resume(ctx, ring, open.ID)
	}
	r, targets, err := c.Plan(ctx, ring, kind, o)
	if err != nil {
		return nil, err
	}
	if len(targets) == 0 {
		return &Job{Ring: ring, Kind: kind, Channel: r.Channel, State: JobDone}, nil
	}
	j, err := c.Store.CreateJob(ctx, &Job{Ring: ring, Kind: kind, Channel: r.Channel, State: JobQueued,
		Total: len(targets), Created: c.now()}, targets)
	if err != nil {
		return nil, err
	}
	c.log().Info("campaign job queued", "ring", ring, "job", j.ID, "kind", kind, "targets", j.Total)
	c.poke()
	return j, nil
}

// Resume queues a paused or failed job again.
func (c *Campaigns) Resume(ctx context.Context, ring string, id int) (*Job, error) {
	j, err := c.Store.UpdateJob(ctx, ring, id, func(j *Job) (*Job, error) {
		if j == nil {
			return nil, fmt.Errorf("%w: ring %s has no job %d", enroll.ErrNotFound, ring, id)
		}
		if j.State == JobDone || j.State == JobQueued || j.State == JobRunning {
			return nil, nil
		}
		j.State, j.Error, j.Finished = JobQueued, "", time.Time{}
		return j, nil
	})
	c.poke()
	return j, err
}

// Pause stops a queued or running job after the message being sent, and
// returns once it has stopped; it resumes with Resume (or Start).
func (c *Campaigns) Pause(ctx context.Context, ring string, id int) (*Job, error) {
	var stopped chan struct{}
	c.mu.Lock()
	if c.current != nil && c.current.Ring == ring && c.current.ID == id {
		if c.stop != nil {
			close(c.stop)
			c.stop = nil
		}
		stopped = c.stopped
	}
	c.mu.Unlock()
	j, err := c.Store.UpdateJob(ctx, ring, id, func(j *Job) (*Job, error) {
		if j == nil {
			return nil, fmt.Errorf("%w: ring %s has no job %d", enroll.ErrNotFound, ring, id)
		}
		if j.State != JobQueued && j.State != JobRunning {
			return nil, nil
		}
		j.State, j.Finished = JobPaused, c.now()
		return j, nil
	})
	if stopped != nil {
		select {
		case <-stopped:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return j, err
}

// JobProgress counts a job's deliveries by state.
type JobProgress struct {
	Job        *Job `json:"job"`
	Sent       int  `json:"sent"`
	Failed     int  `json:"failed"`
	Pending    int  `json:"pending"` // not yet sent (one may be sending)
	Duplicates int  `json:"duplicates"`
}

// Progress returns a job and its counts.
func (c *Campaigns) Progress(ctx context.Context, ring string, id int) (*JobProgress, error) {
	var p JobProgress
	err := c.Store.Jobs(ctx, ring, func(j *Job) bool {
		if j.ID == id {
			p.Job = j
		}
		return p.Job == nil
	})
	if err != nil {
		return nil, err
	}
	if p.Job == nil {
		return nil, fmt.Errorf("%w: ring %s has no job %d", enroll.ErrNotFound, ring, id)
	}
	err = c.Store.Deliveries(ctx, ring, id, func(d *Delivery) bool {
		switch d.State {
		case DeliverySent:
			p.Sent++
		case DeliveryFailed:
			p.Failed++
		default:
			p.Pending++
		}
		p.Duplicates += d.Duplicates()
		return true
	})
	return &p, err
}

// Run runs jobs until ctx is done: the oldest queued or running job
// first (a running one is one the process was running when it stopped),
// each until it is done, paused or failed; and, every minute, the
// actions of rings whose deadline has passed. A job whose ring does not
// open yet (NotBefore) waits. One Run at a time: a second returns at
// once.
func (c *Campaigns) Run(ctx context.Context) {
	if !c.runMu.TryLock() {
		c.log().Error("campaign runner already running")
		return
	}
	defer c.runMu.Unlock()
	c.poke()
	if err := c.ActOnDeadlines(ctx); err != nil && ctx.Err() == nil {
		c.log().Error("campaign deadline actions", "err", err)
	}
	tick := time.NewTicker(time.Minute)
	defer tick.Stop()
	poll := time.NewTicker(c.poll())
	defer poll.Stop()
	for {
		c.mu.Lock()
		wake := c.wake
		c.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-wake:
		case <-poll.C:
		case <-tick.C:
			if err := c.ActOnDeadlines(ctx); err != nil && ctx.Err() == nil {
				c.log().Error("campaign deadline actions", "err", err)
			}
		}
		for ctx.Err() == nil {
			j, err := c.next(ctx)
			if err != nil {
				c.log().Error("campaign jobs", "err", err)
				break
			}
			if j == nil {
				break
			}
			if err := c.run(ctx, j); err != nil && ctx.Err() == nil {
				c.log().Error("campaign job failed", "ring", j.Ring, "job", j.ID, "err", err)
			}
		}
	}
}

// next returns the oldest job ready to run.
func (c *Campaigns) next(ctx context.Context) (*Job, error) {
	var ready []*Job
	err := c.Store.Jobs(ctx, "", func(j *Job) bool {
		if j.State == JobQueued || j.State == JobRunning {
			ready = append(ready, j)
		}
		return true
	})
	if err != nil {
		return nil, err
	}
	slices.SortStableFunc(ready, func(a, b *Job) int { return a.Created.Compare(b.Created) })
	now := c.now()
	for _, j := range ready {
		r, err := c.Store.Ring(ctx, j.Ring)
		if err != nil {
			return nil, err
		}
		if r.NotBefore.After(now) {
			// Wake when it opens.
			time.AfterFunc(r.NotBefore.Sub(now), c.poke)
			continue
		}
		return j, nil
	}
	return nil, nil
}

// A prepared message, or why it could not be made.
type prepared struct {
	d    *Delivery
	msg  *Message
	link *Link
	err  error
}

// run sends a job's remaining messages, one at a time. Each step is one
// write: the outcome of the message before and the start (sending) of
// this one. So a job stopped anywhere has at most one message whose fate
// is unknown; resumed, it sends that one again and counts it in Sends.
func (c *Campaigns) run(ctx context.Context, j *Job) (err error) {
	stop, stopped := make(chan struct{}), make(chan struct{})
	c.mu.Lock()
	c.current, c.stop, c.stopped = j, stop, stopped
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		c.current, c.stop, c.stopped = nil, nil, nil
		c.mu.Unlock()
		close(stopped)
	}()
	log := c.log().With("ring", j.Ring, "job", j.ID, "kind", j.Kind)
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	go c.watchPause(watchCtx, j, stop)

	finish := func(state string, cause error) error {
		_, err := c.Store.UpdateJob(ctx, j.Ring, j.ID, func(j *Job) (*Job, error) {
			if j == nil || j.State == JobPaused && state != JobPaused {
				return nil, nil // paused meanwhile: it stays paused
			}
			j.State, j.Finished, j.Error = state, c.now(), ""
			if cause != nil {
				j.Error = cause.Error()
			}
			return j, nil
		})
		if cause != nil {
			return cause
		}
		return err
	}
	r, err := c.Store.Ring(ctx, j.Ring)
	if err != nil {
		return finish(JobFailed, err)
	}
	content, err := c.Content(ctx)
	if err != nil {
		return finish(JobFailed, fmt.Errorf("templates: %w", err))
	}
	sender, err := c.Open(ctx, j.Channel)
	if err != nil {
		return finish(JobFailed, fmt.Errorf("%s channel: %w", j.Channel, err))
	}
	defer sender.Close()
	j, err = c.Store.UpdateJob(ctx, j.Ring, j.ID, func(j *Job) (*Job, error) {
		if j == nil || j.State != JobQueued {
			return nil, nil // paused meanwhile, or already running
		}
		j.State = JobRunning
		return j, nil
	})
	if err != nil || j == nil || j.State != JobRunning {
		return err
	}
	var todo []*Delivery
	err = c.Store.Deliveries(ctx, j.Ring, j.ID, func(d *Delivery) bool {
		if d.State == DeliveryPending || d.State == DeliverySending {
			todo = append(todo, d)
		}
		return true
	})
	if err != nil {
		return finish(JobFailed, err)
	}
	log.Info("campaign job running", "to_send", len(todo), "of", j.Total)

	// Messages are prepared (link minted, templates rendered) a few
	// ahead of the one being sent, in order.
	prepCtx, cancelPrep := context.WithCancel(ctx)
	defer cancelPrep()
	queue := make(chan chan prepared, 8)
	go func() {
		defer close(queue)
		sem := make(chan struct{}, 4)
		for _, d := range todo {
			out := make(chan prepared, 1)
			select {
			case queue <- out:
			case <-prepCtx.Done():
				return
			}
			select {
			case sem <- struct{}{}:
			case <-prepCtx.Done():
				return
			}
			go func() {
				defer func() { <-sem }()
				out <- c.prepareMessage(prepCtx, r, content, j.Kind, d)
			}()
		}
	}()

	var (
		prev    *Delivery // the outcome to write with the next step
		invited []*Delivery
	)
	flush := func() error {
		if prev != nil {
			if err := c.Store.PutDeliveries(ctx, prev); err != nil {
				return err
			}
			prev = nil
		}
		return c.markRecords(ctx, j, invited)
	}
	// halt ends the run before the next message when the job was paused,
	// or when the process is stopping (the job then stays running and
	// resumes at the next start), with the last outcome written.
	halt := func() (bool, error) {
		select {
		case <-stop:
			cancelPrep()
			if err := flush(); err != nil {
				return true, finish(JobFailed, err)
			}
			log.Info("campaign job paused")
			return true, nil
		default:
		}
		if ctx.Err() != nil {
			flush()
			return true, ctx.Err()
		}
		return false, nil
	}
	for out := range queue {
		var p prepared
		select {
		case p = <-out:
		case <-stop:
		case <-ctx.Done():
		}
		if done, err := halt(); done {
			return err
		}
		d := p.d
		if p.err != nil {
			if errors.Is(p.err, context.Canceled) {
				continue
			}
			d.State, d.At, d.Error = DeliveryFailed, c.now(), p.err.Error()
			log.Warn("campaign message not made", "target", d.Target.Ref, "err", p.err)
			if err := c.Store.PutDeliveries(ctx, compact(prev, d)...); err != nil {
				return finish(JobFailed, err)
			}
			prev = nil
			continue
		}
		d.State = DeliverySending
		d.Sends++
		d.Attempts = 0
		d.Token = p.link.Token
		if err := c.Store.PutDeliveries(ctx, compact(prev, d)...); err != nil {
			return finish(JobFailed, err)
		}
		prev = nil
		sendErr := c.send(ctx, stop, sender, p.msg, d, j)
		var se *SendError
		switch {
		case sendErr == nil:
			c.observe(j, "sent")
			d.State, d.At, d.Code, d.Error = DeliverySent, c.now(), 0, ""
			invited = append(invited, d)
			if len(invited) >= 256 {
				if err := c.markRecords(ctx, j, invited); err != nil {
					return finish(JobFailed, err)
				}
				invited = invited[:0]
			}
		case errors.As(sendErr, &se) && !se.Temporary:
			c.observe(j, "failed")
			d.State, d.At, d.Code, d.Error = DeliveryFailed, c.now(), se.Code, se.Error()
			log.Warn("campaign message refused", "target", d.Target.Ref, "to", d.Target.Email, "err", sendErr)
		default:
			// Temporary failures outlasted the retries, or the job was
			// stopped while waiting to retry: the job stops with the
			// message unsent (or, after a lost connection, in doubt).
			if errors.As(sendErr, &se) && se.Unsent {
				d.State, d.Sends = DeliveryPending, d.Sends-1
			}
			d.Code, d.Error = 0, sendErr.Error()
			if se != nil {
				d.Code = se.Code
			}
			prev = d
			if done, err := halt(); done {
				return err
			}
			if err := flush(); err != nil {
				return finish(JobFailed, err)
			}
			return finish(JobFailed, fmt.Errorf("sending to %s: %w", d.Target.Email, sendErr))
		}
		prev = d
	}
	if done, err := halt(); done {
		return err
	}
	if err := flush(); err != nil {
		return finish(JobFailed, err)
	}
	log.Info("campaign job done")
	return finish(JobDone, nil)
}

func compact(ds ...*Delivery) []*Delivery {
	return slices.DeleteFunc(ds, func(d *Delivery) bool { return d == nil })
}

func (c *Campaigns) observe(j *Job, outcome string) {
	if c.Observe != nil {
		c.Observe(j.Channel, j.Kind, outcome)
	}
}

// send sends one message, trying again after temporary failures.
func (c *Campaigns) send(ctx context.Context, stop <-chan struct{}, s Sender, msg *Message, d *Delivery, j *Job) error {
	retry := c.retry()
	// A stop (pause) lets the message being sent finish; the process
	// stopping (ctx) bounds it by the sender's own timeout.
	sendCtx := context.WithoutCancel(ctx)
	for {
		d.Attempts++
		err := s.Send(sendCtx, msg)
		var se *SendError
		if err == nil || !errors.As(err, &se) || !se.Temporary {
			return err
		}
		c.observe(j, "deferred")
		if d.Attempts >= retry.Attempts {
			return err
		}
		wait := retry.wait(d.Attempts)
		c.log().Info("campaign message deferred", "ring", d.Ring, "target", d.Target.Ref, "attempt", d.Attempts, "retry_in", wait, "err", err)
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-stop:
			t.Stop()
			return err
		case <-ctx.Done():
			t.Stop()
			return err
		}
	}
}

// linkTTL is how long an invitation's link stays valid: two weeks past
// the deadline, or 30 days; at most 90 (Android's limit for tokens).
func (c *Campaigns) linkTTL(r *Ring) time.Duration {
	ttl := 30 * 24 * time.Hour
	if !r.Deadline.IsZero() {
		ttl = max(r.Deadline.Sub(c.now())+14*24*time.Hour, 7*24*time.Hour)
	}
	return min(ttl, 90*24*time.Hour)
}

// prepareMessage mints a delivery's link and renders its message.
func (c *Campaigns) prepareMessage(ctx context.Context, r *Ring, content *Content, kind string, d *Delivery) prepared {
	link, err := c.Link(ctx, &d.Target, c.linkTTL(r))
	if err != nil {
		return prepared{d: d, err: fmt.Errorf("enrollment link: %w", err)}
	}
	inv := &Invitation{
		Name: d.Target.Name, Email: d.Target.Email, Mobile: d.Target.Mobile, Link: link.URL, QR: link.QR,
		Platform: string(d.Target.Platform), Device: d.Target.Device, Ring: r.Name, Deadline: r.Deadline,
		HelpDesk: r.HelpDesk, Reminder: kind == KindReminder,
		Overdue: !r.Deadline.IsZero() && c.now().After(r.Deadline),
	}
	if inv.Name == "" {
		inv.Name = d.Target.Email
	}
	rd := content.Invitation
	if kind == KindReminder && content.Reminder != nil {
		rd = content.Reminder
	}
	msg, err := rd.Render(inv)
	if err != nil {
		return prepared{d: d, err: err}
	}
	return prepared{d: d, msg: msg, link: link}
}

// markRecords moves the records of invited devices from pre-approved to
// invited, and logs the message in their history.
func (c *Campaigns) markRecords(ctx context.Context, j *Job, sent []*Delivery) error {
	var serials []string
	at := map[string]*Delivery{}
	for _, d := range sent {
		if s, _ := enroll.ParseRef(d.Target.Ref); s != "" {
			serials = append(serials, s)
			at[s] = d
		}
	}
	if len(serials) == 0 {
		return nil
	}
	step := enroll.StepInvited
	if j.Kind == KindReminder {
		step = enroll.StepReminded
	}
	return c.Lifecycle.Records.UpdateRecords(ctx, serials, func(serial string, rec *enroll.Record) (*enroll.Record, error) {
		if rec == nil {
			return nil, nil
		}
		d := at[serial]
		rec = rec.Clone()
		if rec.Status == enroll.StatusPreApproved {
			rec.Status = enroll.StatusInvited
		}
		rec.UpdatedAt = d.At
		rec.Log(enroll.Event{At: d.At, Step: step, Token: d.Token,
			Note: fmt.Sprintf("%s to %s, ring %s (job %d)", j.Channel, d.Target.Email, j.Ring, j.ID)})
		return rec, nil
	})
}

// ActOnDeadlines acts on each ring whose deadline has passed, once: its
// members not enrolled join its overdue group, and a last reminder goes
// to them when the ring says so.
func (c *Campaigns) ActOnDeadlines(ctx context.Context) error {
	now := c.now()
	var due []*Ring
	err := c.Store.Rings(ctx, func(r *Ring) bool {
		if !r.Deadline.IsZero() && now.After(r.Deadline) && r.DeadlineActed.IsZero() {
			due = append(due, r)
		}
		return true
	})
	if err != nil {
		return err
	}
	for _, r := range due {
		p, err := RingProgress(ctx, c.Store, c.Lifecycle.Records, r, now)
		if err != nil {
			return err
		}
		var serials, emails []string
		for _, t := range p.Targets {
			if t.State == StateEnrolled {
				continue
			}
			if s, e := enroll.ParseRef(t.Ref); s != "" {
				serials = append(serials, s)
			} else {
				emails = append(emails, e)
			}
		}
		if r.OverdueGroup != "" && len(serials)+len(emails) > 0 {
			if _, err := c.Lifecycle.AddToGroup(ctx, r.OverdueGroup, serials, emails); err != nil {
				return fmt.Errorf("ring %s: overdue group: %w", r.Name, err)
			}
		}
		if r.RemindOverdue && len(serials)+len(emails) > 0 {
			if _, err := c.Start(ctx, r.Name, KindReminder, Options{OnlyNotEnrolled: true}); err != nil && !errors.Is(err, ErrBusy) {
				return fmt.Errorf("ring %s: overdue reminder: %w", r.Name, err)
			}
		}
		if _, err := c.Store.UpdateRing(ctx, r.Name, func(r *Ring) (*Ring, error) {
			r.DeadlineActed = now
			return r, nil
		}); err != nil {
			return err
		}
		c.log().Info("campaign deadline passed", "ring", r.Name, "not_enrolled", len(serials)+len(emails),
			"overdue_group", r.OverdueGroup, "reminded", r.RemindOverdue)
	}
	return nil
}
