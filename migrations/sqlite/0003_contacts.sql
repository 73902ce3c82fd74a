-- The contact book: seeded from the config's `contacts:` at every start
-- (config wins for the names it lists), managed on the web page later.
CREATE TABLE contacts (
    name       TEXT PRIMARY KEY,
    email      TEXT,
    telegram   TEXT,
    groups     TEXT NOT NULL DEFAULT '[]',  -- JSON array of group names
    updated_at INTEGER NOT NULL
);
