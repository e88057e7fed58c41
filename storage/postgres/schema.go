package postgres

// schemaV1 is the first schema. Keys are text in the "C" collation, so that
// "in ID order" means byte order, as in the bbolt backend, whatever the
// database's locale. A value the stores only read and write whole is a
// jsonb document beside its key; what a query selects, joins or orders on
// is a column of its own.
const schemaV1 = `
CREATE TABLE scep_challenges (
	hash bytea PRIMARY KEY,
	id   text COLLATE "C" NOT NULL UNIQUE,
	doc  jsonb NOT NULL
);
CREATE TABLE scep_certs (
	fingerprint text COLLATE "C" PRIMARY KEY,
	serial      text COLLATE "C" NOT NULL CONSTRAINT scep_certs_serial_key UNIQUE,
	revoked     boolean NOT NULL DEFAULT false,
	doc         jsonb NOT NULL
);

CREATE TABLE mdm_enrollments (
	id  text COLLATE "C" PRIMARY KEY,
	doc jsonb NOT NULL
);
CREATE TABLE mdm_cert_bindings (
	fingerprint   text COLLATE "C" PRIMARY KEY,
	enrollment_id text COLLATE "C" NOT NULL
);
-- A command's and a result's plists are bytea beside the rest of the
-- value (JSON, whose times keep their nanoseconds).
CREATE TABLE mdm_commands (
	uuid    text COLLATE "C" PRIMARY KEY,
	payload bytea NOT NULL,
	doc     jsonb NOT NULL
);
CREATE TABLE mdm_queue (
	enrollment_id text COLLATE "C" NOT NULL,
	command_uuid  text COLLATE "C" NOT NULL REFERENCES mdm_commands,
	seq           bigint GENERATED ALWAYS AS IDENTITY,
	request_type  text NOT NULL,
	not_now       boolean NOT NULL DEFAULT false,
	PRIMARY KEY (enrollment_id, command_uuid)
);
CREATE INDEX mdm_queue_order ON mdm_queue (enrollment_id, seq);
CREATE TABLE mdm_results (
	seq           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	enrollment_id text COLLATE "C" NOT NULL,
	raw           bytea,
	doc           jsonb NOT NULL
);
CREATE INDEX mdm_results_enrollment ON mdm_results (enrollment_id, seq);

CREATE TABLE enroll_tokens (
	hash bytea PRIMARY KEY,
	id   text COLLATE "C" NOT NULL UNIQUE,
	doc  jsonb NOT NULL
);
CREATE TABLE enroll_records (
	serial text COLLATE "C" PRIMARY KEY,
	doc    jsonb NOT NULL
);
CREATE TABLE enroll_users (
	email text COLLATE "C" PRIMARY KEY,
	doc   jsonb NOT NULL
);
CREATE TABLE enroll_assignments (
	id  text COLLATE "C" PRIMARY KEY,
	doc jsonb NOT NULL
);

-- One row per package's settings ('enroll', 'directory').
CREATE TABLE settings (
	name text COLLATE "C" PRIMARY KEY,
	doc  jsonb NOT NULL
);

CREATE TABLE dep_tokens (
	name text COLLATE "C" PRIMARY KEY,
	doc  jsonb NOT NULL
);
CREATE TABLE dep_cursors (
	name text COLLATE "C" PRIMARY KEY,
	doc  jsonb NOT NULL
);

CREATE TABLE campaign_rings (
	name text COLLATE "C" PRIMARY KEY,
	doc  jsonb NOT NULL
);
CREATE TABLE campaign_jobs (
	ring text COLLATE "C" NOT NULL REFERENCES campaign_rings ON DELETE CASCADE,
	id   integer NOT NULL,
	doc  jsonb NOT NULL,
	PRIMARY KEY (ring, id)
);
CREATE TABLE campaign_deliveries (
	ring text COLLATE "C" NOT NULL,
	job  integer NOT NULL,
	seq  integer NOT NULL,
	doc  jsonb NOT NULL,
	PRIMARY KEY (ring, job, seq),
	FOREIGN KEY (ring, job) REFERENCES campaign_jobs ON DELETE CASCADE
);

CREATE TABLE scim_resources (
	type text COLLATE "C" NOT NULL,
	id   text COLLATE "C" NOT NULL,
	key  text COLLATE "C" NOT NULL DEFAULT '',
	doc  jsonb NOT NULL,
	PRIMARY KEY (type, id)
);
CREATE UNIQUE INDEX scim_resources_key ON scim_resources (type, key) WHERE key <> '';
CREATE TABLE scim_tokens (
	id  text COLLATE "C" PRIMARY KEY,
	doc jsonb NOT NULL
);

CREATE TABLE directory_groups (
	key text COLLATE "C" PRIMARY KEY,
	doc jsonb NOT NULL
);
CREATE TABLE directory_links (
	key   text COLLATE "C" PRIMARY KEY,
	email text COLLATE "C" NOT NULL
);
CREATE TABLE directory_offboardings (
	id  text COLLATE "C" PRIMARY KEY,
	doc jsonb NOT NULL
);
CREATE TABLE directory_audit (
	seq bigint PRIMARY KEY,
	doc jsonb NOT NULL
);

-- Counters handed out under a row lock, so that numbers are given in
-- commit order (the audit log's sequence).
CREATE TABLE counters (
	name  text COLLATE "C" PRIMARY KEY,
	value bigint NOT NULL
);

-- Leases: which replica runs a background job, until when.
CREATE TABLE leases (
	name       text COLLATE "C" PRIMARY KEY,
	holder     text NOT NULL,
	expires_at timestamptz NOT NULL
);
`
