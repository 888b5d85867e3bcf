-- kura-service coordinator schema: user_version = 2, application_id = 0x4b757261
-- sqlite_master after migrating an empty database (automatic indexes omitted).

CREATE TABLE withdrawals (
    id          TEXT PRIMARY KEY,
    requester   TEXT NOT NULL,
    request_id  TEXT NOT NULL,
    document    BLOB NOT NULL,
    state       TEXT NOT NULL CHECK (state IN ('submitted', 'approving', 'signing', 'finalized', 'refused')),
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    UNIQUE (requester, request_id)
) STRICT;

CREATE INDEX withdrawals_open ON withdrawals (created_at)
    WHERE state NOT IN ('finalized', 'refused');

CREATE TABLE packages (
    withdrawal  TEXT NOT NULL REFERENCES withdrawals (id),
    session     INTEGER NOT NULL CHECK (session >= 0),
    digest      TEXT NOT NULL,
    document    BLOB NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (withdrawal, session)
) STRICT;

CREATE TABLE shares (
    withdrawal  TEXT NOT NULL,
    session     INTEGER NOT NULL,
    member      TEXT NOT NULL,
    digest      TEXT NOT NULL,
    document    BLOB NOT NULL,
    received_at INTEGER NOT NULL,
    PRIMARY KEY (withdrawal, session, member),
    FOREIGN KEY (withdrawal, session) REFERENCES packages (withdrawal, session)
) STRICT;

CREATE TABLE results (
    withdrawal  TEXT PRIMARY KEY REFERENCES withdrawals (id),
    psbt        BLOB,
    tx          BLOB,
    reason      TEXT,
    decided_at  INTEGER NOT NULL,
    CHECK ((psbt IS NOT NULL AND tx IS NOT NULL AND reason IS NULL)
        OR (psbt IS NULL AND tx IS NULL AND reason IS NOT NULL))
) STRICT;

CREATE TABLE mailboxes (
    member      TEXT PRIMARY KEY,
    seq         INTEGER NOT NULL CHECK (seq > 0)
) STRICT;

CREATE TABLE events (
    member      TEXT NOT NULL REFERENCES mailboxes (member),
    seq         INTEGER NOT NULL,
    withdrawal  TEXT NOT NULL REFERENCES withdrawals (id),
    kind        TEXT NOT NULL CHECK (kind IN ('submitted', 'packages', 'finalized', 'refused')),
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (member, seq)
) STRICT, WITHOUT ROWID;

CREATE TABLE challenges (
    challenge   BLOB PRIMARY KEY CHECK (length(challenge) = 32),
    member      TEXT NOT NULL,
    expires_at  INTEGER NOT NULL
) STRICT;

CREATE TABLE tokens (
    hash        BLOB PRIMARY KEY CHECK (length(hash) = 32),
    member      TEXT NOT NULL,
    role        TEXT NOT NULL CHECK (role IN ('signer', 'requester')),
    expires_at  INTEGER NOT NULL
) STRICT;

CREATE TABLE "approvals" (
    withdrawal  TEXT NOT NULL REFERENCES withdrawals (id),
    member      TEXT NOT NULL,
    digest      TEXT NOT NULL,
    document    BLOB NOT NULL,
    received_at INTEGER NOT NULL,
    used_in     INTEGER CHECK (used_in >= 0),
    PRIMARY KEY (withdrawal, digest)
) STRICT;

CREATE TABLE set_aside (
    withdrawal  TEXT NOT NULL,
    session     INTEGER NOT NULL,
    member      TEXT NOT NULL,
    reason      TEXT NOT NULL CHECK (reason IN ('invalid-shares', 'missed-deadline')),
    detail      TEXT NOT NULL,
    document    BLOB,
    decided_at  INTEGER NOT NULL,
    PRIMARY KEY (withdrawal, session, member),
    FOREIGN KEY (withdrawal, session) REFERENCES packages (withdrawal, session)
) STRICT;
