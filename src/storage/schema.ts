/**
 * The log's tables (spec/storage.md). Unqualified names: the connection's search_path
 * picks the schema, so tests and several logs can share one database.
 */
export const LOG_SCHEMA = `
CREATE TABLE IF NOT EXISTS log_meta (
  id         smallint PRIMARY KEY CHECK (id = 1),
  origin     text NOT NULL,
  vkey       text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);

-- Sequencing state: the next index to assign. Its row lock serialises sequencers.
CREATE TABLE IF NOT EXISTS log_sequence (
  id         smallint PRIMARY KEY CHECK (id = 1),
  next_index bigint NOT NULL CHECK (next_index >= 0)
);

-- Integration state: the tree the tiles hold. A row of its own, so that integrating
-- never holds the lock sequencing waits on. tree_size <= log_sequence.next_index.
CREATE TABLE IF NOT EXISTS log_tree (
  id        smallint PRIMARY KEY CHECK (id = 1),
  tree_size bigint NOT NULL CHECK (tree_size >= 0),
  root_hash bytea  NOT NULL CHECK (length(root_hash) = 32)
);

-- Entry bundles (c2sp.org/tlog-tiles), uint16-length-prefixed entries. A row grows until
-- it holds 256 entries; bytes once written are never changed.
CREATE TABLE IF NOT EXISTS entry_bundles (
  idx   bigint   PRIMARY KEY CHECK (idx >= 0),
  width smallint NOT NULL CHECK (width BETWEEN 1 AND 256),
  data  bytea    NOT NULL
);

-- Hash tiles keyed by (level, index); width 256 is full and never rewritten.
CREATE TABLE IF NOT EXISTS tiles (
  level smallint NOT NULL CHECK (level BETWEEN 0 AND 63),
  idx   bigint   NOT NULL CHECK (idx >= 0),
  width smallint NOT NULL CHECK (width BETWEEN 1 AND 256),
  data  bytea    NOT NULL CHECK (length(data) = 32 * width),
  PRIMARY KEY (level, idx)
);

-- Leaf hash (first 6 bytes, as an integer) to index, for proofs by leaf hash.
CREATE TABLE IF NOT EXISTS leaf_index (
  hash_prefix bigint NOT NULL,
  idx         bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS leaf_index_hash_prefix ON leaf_index (hash_prefix);

-- Every signed checkpoint the log published.
CREATE TABLE IF NOT EXISTS checkpoints (
  tree_size    bigint PRIMARY KEY CHECK (tree_size >= 0),
  note         text NOT NULL,
  published_at timestamptz NOT NULL DEFAULT now()
);
`;
