/**
 * The LogStore on Postgres through postgres.js. The embedded default (PGlite) is reached
 * with the same driver over a Unix socket (src/storage/embedded.ts), so both run this code.
 *
 * Conventions: every transaction is sql.begin() with the callback's parameter named `sql`,
 * shadowing the pool so nothing inside can reach a connection outside the transaction;
 * bigint columns arrive as strings and are converted with toSize(); bytea arrives as a
 * Buffer and leaves as a Uint8Array view, except where tiles and bundles are read in bulk:
 * those queries are .raw() and decode the hex themselves (src/storage/bytea.ts).
 */
import postgres from 'postgres';
import { decodeBundle, encodeBundle } from '../core/bundle.js';
import { EMPTY_ROOT, HASH_SIZE } from '../core/hash.js';
import { ConflictError, FatalError, StorageError } from '../core/errors.js';
import { TILE_WIDTH } from '../core/tile.js';
import type { TileData } from '../core/integrate.js';
import { decodeByteaHex, decodeIntText } from './bytea.js';
import { LOG_SCHEMA } from './schema.js';
import type { LogMeta, LogStore, StoredCheckpoint, TreeState } from './types.js';

type Sql = postgres.Sql<{}>;

export interface PostgresLogStoreOptions {
  /** The schema holding the log's tables (created if missing). Default "glasslog". */
  schema?: string;
  /**
   * Take a session advisory lock in lockWriter(). On by default; the embedded store turns
   * it off because its data-directory lock already admits one process only.
   */
  advisoryLock?: boolean;
  /**
   * Runs after every committed write and before the write resolves. The embedded store
   * uses it to flush PGlite's files to disk, which PGlite itself never does.
   */
  afterCommit?: () => Promise<void>;
  /**
   * The store talks to a single-session engine (embedded PGlite): session settings are
   * made with SET instead of connection startup parameters, which it ignores.
   */
  singleSession?: boolean;
}

/**
 * Creates a store's tables in `schema` (`ddl` runs with it as the search path), in one
 * transaction under an advisory lock shared by every store (log, audit, witness), so stores
 * sharing a schema never race on CREATE SCHEMA or on each other's DDL. On a single-session
 * engine (PGlite behind pglite-socket, which does not apply startup parameters) it then
 * sets the session's search_path, once.
 */
export async function migrateSchema(sql: postgres.Sql, schema: string, singleSession: boolean, ddl: (tx: postgres.TransactionSql) => Promise<void>): Promise<void> {
  await sql.begin(async (tx) => {
    await tx`SELECT pg_advisory_xact_lock(hashtext(${'glasslog-migrate:' + schema}))`;
    await tx`CREATE SCHEMA IF NOT EXISTS ${tx(schema)}`;
    await tx`SET LOCAL search_path TO ${tx(schema)}`;
    await ddl(tx);
  });
  if (singleSession) await sql`SET search_path TO ${sql(schema)}`;
}

/** Postgres connection options for a log in `schema`. */
export function schemaConnection(schema: string): { search_path: string } {
  if (!/^[a-z_][a-z0-9_]{0,62}$/.test(schema)) throw new RangeError(`invalid schema name ${JSON.stringify(schema)}`);
  return { search_path: schema };
}

/**
 * Opens a store on `url` (or postgres.js options) with the log's tables in `schema`.
 * `max` bounds the pool.
 */
export function openPostgresLogStore(
  target: string | postgres.Options<{}>,
  opts: PostgresLogStoreOptions & { max?: number } = {}
): PostgresLogStore {
  const schema = opts.schema ?? 'glasslog';
  const base: postgres.Options<{}> = {
    max: opts.max ?? 4,
    onnotice: () => undefined,
    connection: schemaConnection(schema),
  };
  const sql = typeof target === 'string' ? postgres(target, base) : postgres({ ...target, ...base });
  return new PostgresLogStore(sql, { ...opts, schema });
}

export function toSize(v: unknown, what: string): number {
  const n = typeof v === 'number' ? v : Number(v);
  if (!Number.isSafeInteger(n) || n < 0) throw new StorageError(`stored ${what} ${String(v)} is not a safe size`);
  return n;
}

function bytes(v: unknown): Uint8Array {
  const b = v as Uint8Array;
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
}

/** The first 6 bytes of a leaf hash as a safe integer: the leaf_index key. */
export function leafPrefix(h: Uint8Array, offset = 0): number {
  let n = 0;
  for (let i = 0; i < 6; i++) n = n * 256 + h[offset + i]!;
  return n;
}

export class PostgresLogStore implements LogStore {
  private readonly schema: string;
  private readonly advisoryLock: boolean;
  private lockConn: postgres.ReservedSql | undefined;
  private readonly afterCommit: () => Promise<void>;
  private readonly singleSession: boolean;

  constructor(
    private readonly sql: Sql,
    opts: PostgresLogStoreOptions = {}
  ) {
    this.schema = opts.schema ?? 'glasslog';
    schemaConnection(this.schema);
    this.advisoryLock = opts.advisoryLock ?? true;
    this.afterCommit = opts.afterCommit ?? (async () => undefined);
    this.singleSession = opts.singleSession ?? false;
  }

  async migrate(): Promise<void> {
    await migrateSchema(this.sql, this.schema, this.singleSession, async (sql) => {
      await sql.unsafe(LOG_SCHEMA);
      await sql`INSERT INTO log_sequence (id, next_index) VALUES (1, 0) ON CONFLICT (id) DO NOTHING`;
      await sql`INSERT INTO log_tree (id, tree_size, root_hash) VALUES (1, 0, ${EMPTY_ROOT}) ON CONFLICT (id) DO NOTHING`;
    });
  }

  async lockWriter(): Promise<void> {
    if (!this.advisoryLock || this.lockConn) return;
    const conn = await this.sql.reserve();
    const key = 'glasslog-writer:' + this.schema;
    const [row] = await conn`SELECT pg_try_advisory_lock(hashtext(${key})) AS ok, pg_backend_pid() AS pid`;
    if (!row?.ok) {
      conn.release();
      throw new ConflictError(`another glasslog server is already writing to log schema "${this.schema}" on this database`);
    }
    this.lockConn = conn;
  }

  async getMeta(): Promise<LogMeta | null> {
    const [row] = await this.sql`SELECT origin, vkey FROM log_meta WHERE id = 1`;
    return row ? { origin: row.origin as string, vkey: row.vkey as string } : null;
  }

  async initMeta(meta: LogMeta): Promise<LogMeta> {
    await this.sql`INSERT INTO log_meta (id, origin, vkey) VALUES (1, ${meta.origin}, ${meta.vkey})
                   ON CONFLICT (id) DO NOTHING`;
    await this.afterCommit();
    const stored = await this.getMeta();
    if (!stored) throw new StorageError('log metadata vanished after insert');
    return stored;
  }

  async state(): Promise<TreeState> {
    const [row] = await this.sql`SELECT s.next_index, t.tree_size, t.root_hash
                                 FROM log_sequence s, log_tree t WHERE s.id = 1 AND t.id = 1`;
    if (!row) throw new StorageError('log state rows missing: migrate() has not run');
    return {
      nextIndex: toSize(row.next_index, 'next_index'),
      treeSize: toSize(row.tree_size, 'tree_size'),
      rootHash: bytes(row.root_hash),
    };
  }

  async sequence(entries: readonly Uint8Array[]): Promise<number> {
    if (entries.length === 0) return (await this.state()).nextIndex;
    const first = await this.sql.begin(async (sql) => {
      // The row lock serialises sequencers: a second writer waits here, then reads the
      // index the first one committed, so two writers can never assign the same index.
      const [row] = await sql`SELECT next_index FROM log_sequence WHERE id = 1 FOR UPDATE`;
      const first = toSize(row?.next_index, 'next_index');
      const writes: Array<Promise<postgres.RowList<postgres.Row[]>>> = [];
      let idx = first;
      for (let i = 0; i < entries.length; ) {
        const b = Math.floor(idx / TILE_WIDTH);
        const off = idx % TILE_WIDTH;
        const k = Math.min(TILE_WIDTH - off, entries.length - i);
        const chunk = encodeBundle(entries.slice(i, i + k));
        writes.push(
          off === 0
            ? sql`INSERT INTO entry_bundles (idx, width, data) VALUES (${b}, ${k}, ${chunk})`
            : sql`UPDATE entry_bundles SET data = data || ${chunk}, width = width + ${k}
                  WHERE idx = ${b} AND width = ${off}`
        );
        i += k;
        idx += k;
      }
      writes.push(sql`UPDATE log_sequence SET next_index = ${idx} WHERE id = 1`);
      const results = await Promise.all(writes);
      for (const r of results) {
        if (r.count !== 1) throw new FatalError(`sequencing at index ${first}: entry bundles do not match the stored next index`);
      }
      return first;
    });
    await this.afterCommit();
    return first;
  }

  async readEntries(from: number, to: number): Promise<Uint8Array[]> {
    if (to <= from) return [];
    const lo = Math.floor(from / TILE_WIDTH);
    const hi = Math.floor((to - 1) / TILE_WIDTH);
    const rows = await this.sql`SELECT idx, width, data FROM entry_bundles
                                WHERE idx BETWEEN ${lo} AND ${hi} ORDER BY idx`.raw();
    const out: Uint8Array[] = [];
    let expect = lo;
    for (const row of rows) {
      const idx = decodeIntText(row[0]!, 'bundle index');
      if (idx !== expect) throw new StorageError(`entry bundle ${expect} is missing`);
      expect++;
      const entries = decodeBundle(decodeByteaHex(row[2]!, `entry bundle ${idx}`), decodeIntText(row[1]!, `width of entry bundle ${idx}`));
      for (let i = 0; i < entries.length; i++) {
        const n = idx * TILE_WIDTH + i;
        if (n >= from && n < to) out.push(entries[i]!);
      }
    }
    if (out.length !== to - from) throw new StorageError(`entries ${from}–${to} are not all sequenced`);
    return out;
  }

  async integrate(oldSize: number, newSize: number, rootHash: Uint8Array, tiles: readonly TileData[]): Promise<void> {
    const prefixes: number[] = [];
    const indices: number[] = [];
    for (const t of tiles) {
      if (t.coord.level !== 0) continue;
      const base = t.coord.index * TILE_WIDTH;
      for (let i = 0; i < t.coord.width; i++) {
        if (base + i >= oldSize && base + i < newSize) {
          prefixes.push(leafPrefix(t.data, i * HASH_SIZE));
          indices.push(base + i);
        }
      }
    }
    await this.sql.begin(async (sql) => {
      const writes: Array<Promise<postgres.RowList<postgres.Row[]>>> = [];
      // next_index only grows, so reading it without its lock is safe here.
      writes.push(sql`UPDATE log_tree SET tree_size = ${newSize}, root_hash = ${rootHash}
                      WHERE id = 1 AND tree_size = ${oldSize}
                        AND (SELECT next_index FROM log_sequence WHERE id = 1) >= ${newSize}`);
      for (const t of tiles) {
        // A full tile is never rewritten; a partial one only grows, keeping its prefix.
        writes.push(sql`INSERT INTO tiles (level, idx, width, data)
          VALUES (${t.coord.level as number}, ${t.coord.index}, ${t.coord.width}, ${t.data})
          ON CONFLICT (level, idx) DO UPDATE SET width = excluded.width, data = excluded.data
          WHERE tiles.width < excluded.width
            AND substring(excluded.data from 1 for length(tiles.data)) = tiles.data`);
      }
      if (indices.length > 0) {
        writes.push(sql`INSERT INTO leaf_index (hash_prefix, idx)
          SELECT * FROM unnest(${sql.array(prefixes, 20)}::int8[], ${sql.array(indices, 20)}::int8[])`);
      }
      const results = await Promise.all(writes);
      if (results[0]!.count !== 1) {
        throw new FatalError(`integration ${oldSize} → ${newSize}: the stored tree is no longer at size ${oldSize}`);
      }
      for (let i = 0; i < tiles.length; i++) {
        if (results[i + 1]!.count !== 1) {
          const c = tiles[i]!.coord;
          throw new FatalError(`integration ${oldSize} → ${newSize}: tile ${c.level}/${c.index} would change stored hashes`);
        }
      }
    });
    await this.afterCommit();
  }

  async readTile(level: number, index: number): Promise<Uint8Array | null> {
    const [row] = await this.sql`SELECT data FROM tiles WHERE level = ${level} AND idx = ${index}`.raw();
    return row ? decodeByteaHex(row[0]!, `tile ${level}/${index}`) : null;
  }

  async readBundle(index: number): Promise<Uint8Array | null> {
    const [row] = await this.sql`SELECT data FROM entry_bundles WHERE idx = ${index}`.raw();
    return row ? decodeByteaHex(row[0]!, `entry bundle ${index}`) : null;
  }

  async findLeaf(leafHash: Uint8Array): Promise<number[]> {
    const rows = await this.sql`SELECT idx FROM leaf_index WHERE hash_prefix = ${leafPrefix(leafHash)} ORDER BY idx`;
    return rows.map((r) => toSize(r.idx, 'leaf index'));
  }

  async publish(cp: StoredCheckpoint): Promise<void> {
    await this.sql.begin(async (sql) => {
      const [st] = await sql`SELECT tree_size FROM log_tree WHERE id = 1 FOR UPDATE`;
      const treeSize = toSize(st?.tree_size, 'tree_size');
      if (cp.treeSize > treeSize) throw new FatalError(`publishing size ${cp.treeSize} beyond the integrated size ${treeSize}`);
      const [latest] = await sql`SELECT max(tree_size) AS size FROM checkpoints`;
      if (latest?.size !== null && latest?.size !== undefined && toSize(latest.size, 'checkpoint size') > cp.treeSize) {
        throw new FatalError(`publishing size ${cp.treeSize} below the latest published size ${String(latest.size)}`);
      }
      await sql`INSERT INTO checkpoints (tree_size, note) VALUES (${cp.treeSize}, ${cp.note})
                ON CONFLICT (tree_size) DO NOTHING`;
    });
    await this.afterCommit();
  }

  async addCosignatures(cp: StoredCheckpoint): Promise<boolean> {
    // The caller guarantees the same checkpoint text; the length guard keeps a note with
    // fewer signatures (a late, smaller answer) from replacing one with more.
    const rows = await this.sql`UPDATE checkpoints SET note = ${cp.note}
                                WHERE tree_size = ${cp.treeSize} AND octet_length(note) < ${new TextEncoder().encode(cp.note).length} RETURNING tree_size`;
    if (rows.length > 0) await this.afterCommit();
    return rows.length > 0;
  }

  async latestCheckpoint(): Promise<StoredCheckpoint | null> {
    const [row] = await this.sql`SELECT tree_size, note FROM checkpoints ORDER BY tree_size DESC LIMIT 1`;
    return row ? { treeSize: toSize(row.tree_size, 'checkpoint size'), note: row.note as string } : null;
  }

  async checkpointAt(treeSize: number): Promise<StoredCheckpoint | null> {
    const [row] = await this.sql`SELECT tree_size, note FROM checkpoints WHERE tree_size = ${treeSize}`;
    return row ? { treeSize: toSize(row.tree_size, 'checkpoint size'), note: row.note as string } : null;
  }

  async close(): Promise<void> {
    if (this.lockConn) {
      await this.lockConn`SELECT pg_advisory_unlock_all()`.catch(() => undefined);
      this.lockConn.release();
      this.lockConn = undefined;
    }
    await this.sql.end({ timeout: 5 });
  }
}
