/**
 * Query speed of the agent index at 10 million entries: one run, one run's page, an agent's
 * newest entries, a kind in a client-time window, a page deep into an agent's history by
 * cursor. Baseline in the same run: a primary-key lookup of one row of the same table.
 *
 *   npx tsx bench/query.ts [--entries 10000000] [--queries 300]
 *
 * Needs DATABASE_URL (default postgres://postgres@127.0.0.1:5432/test). The rows are made
 * in SQL (runs of 20 entries of 2,000 agents, times growing with the index), with the
 * store's own tables and indexes (migrate()) and its time bounds filled in to match. Proofs for the rows a query returns come from the tile cache or a few tile
 * reads: bench/scaling.ts measures them at 10^7 entries.
 */
import { parseArgs } from 'node:util';
import postgres from 'postgres';
import { PostgresAuditStore } from '../src/storage/audit-store.js';
import { schemaConnection } from '../src/storage/postgres.js';
import { benchSchema, machine, percentile } from './lib.js';

const { values } = parseArgs({ options: { entries: { type: 'string', default: '10000000' }, queries: { type: 'string', default: '300' } } });
const N = Number(values.entries);
const Q = Number(values.queries);
const url = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
const RUN = 20;
const AGENTS = 2000;
const KINDS = ['decision', 'prompt', 'model_call', 'tool_call', 'observation', 'policy_check', 'outcome'];
const T0 = 1_790_000_000_000;

const schema = benchSchema('query');
const sql = postgres(url, { max: 2, onnotice: () => undefined, connection: schemaConnection(schema) });
const store = new PostgresAuditStore(sql, { schema, ownsConnection: true });

function stats(xs: number[]): string {
  const s = [...xs].sort((a, b) => a - b);
  return `p50 ${percentile(s, 0.5).toFixed(2)} ms, p99 ${percentile(s, 0.99).toFixed(2)} ms (${lastRows.toFixed(1)} rows on average)`;
}

/** Times `run` Q times; also reports the mean number of rows it returned. */
async function time(run: () => Promise<readonly unknown[]>): Promise<number[]> {
  const out: number[] = [];
  let rows = 0;
  for (let i = 0; i < Q; i++) {
    const t = performance.now();
    rows += (await run()).length;
    out.push(performance.now() - t);
  }
  lastRows = rows / Q;
  return out;
}
let lastRows = 0;

const rand = (n: number) => Math.floor(Math.random() * n);

try {
  console.log(`machine: ${machine()}; ${N} entries, runs of ${RUN}, ${AGENTS} agents`);
  await store.migrate();
  const t = performance.now();
  const chunk = 1_000_000;
  for (let from = 0; from < N; from += chunk) {
    const to = Math.min(N, from + chunk);
    await sql`
      INSERT INTO audit_entries (idx, type, agent, run, seq, kind, client_time, log_time, leaf_hash)
      SELECT g, 'event', 'agent-' || ((g / ${RUN}) % ${AGENTS}), 'run-' || (g / ${RUN}), g % ${RUN},
             (${sql.array(KINDS)}::text[])[1 + (g % ${KINDS.length})], ${T0} + g * 10, ${T0} + g * 10 + 3,
             decode(md5(g::text) || md5((g + 1)::text), 'hex')
      FROM generate_series(${from}::bigint, ${to - 1}::bigint) AS g`;
    process.stdout.write(`  loaded ${to} rows (${((performance.now() - t) / 1000).toFixed(0)} s)\n`);
  }
  // The store's time bounds (audit_time_blocks, kept by index() beside the rows): times
  // grow with the index here, so a block's prefix max is its last row's time and its
  // suffix min its first row's.
  await sql`
    INSERT INTO audit_time_blocks (block, client_pmax, client_smin, log_pmax, log_smin)
    SELECT b, ${T0} + (b * 256 + 255) * 10, ${T0} + b * 256 * 10, ${T0} + (b * 256 + 255) * 10 + 3, ${T0} + b * 256 * 10 + 3
    FROM generate_series(0::bigint, ${Math.ceil(N / 256) - 1}::bigint) AS b`;
  await sql`UPDATE audit_state SET indexed_size = ${N}`;
  await sql`VACUUM ANALYZE audit_entries`;
  console.log(`loaded in ${((performance.now() - t) / 1000).toFixed(0)} s; table + indexes ${(await sql`SELECT pg_size_pretty(pg_total_relation_size('audit_entries')) AS s`)[0]!.s}`);

  const runs = N / RUN;
  const pick = () => {
    const r = rand(runs);
    return { agent: `agent-${r % AGENTS}`, run: `run-${r}` };
  };
  const pk = await time(() => sql`SELECT * FROM audit_entries WHERE idx = ${rand(N)}`);
  console.log(`baseline: primary-key lookup of one row: ${stats(pk)}`);
  const oneRun = await time(async () => {
    const r = pick();
    const rows = await store.run(r.agent, r.run);
    if (rows.length !== RUN) throw new Error(`run ${r.run}: ${rows.length} rows`);
    return rows;
  });
  console.log(`one run (${RUN} entries, in causal order): ${stats(oneRun)}`);
  const runPage = await time(() => store.query({ ...pick(), below: N, limit: 100 }));
  console.log(`query agent+run, limit 100: ${stats(runPage)}`);
  const agentNewest = await time(() => store.query({ agent: `agent-${rand(AGENTS)}`, order: 'desc', below: N, limit: 100 }));
  console.log(`query agent, newest 100: ${stats(agentNewest)}`);
  const deep = await time(() => store.query({ agent: `agent-${rand(AGENTS)}`, order: 'asc', after: rand(N), below: N, limit: 100 }));
  console.log(`query agent, 100 after a random cursor: ${stats(deep)}`);
  const kindWindow = await time(() => {
    const since = T0 + rand(N) * 10;
    return store.query({ kind: KINDS[rand(KINDS.length)]!, since, until: since + 60_000, timeField: 'client', below: N, limit: 100 });
  });
  console.log(`query kind in a 1-minute client-time window, limit 100: ${stats(kindWindow)}`);
  const agentWindow = await time(() => {
    const since = T0 + rand(N) * 10;
    return store.query({ agent: `agent-${rand(AGENTS)}`, since, until: since + 3_600_000, timeField: 'client', below: N, limit: 100 });
  });
  console.log(`query agent in a 1-hour client-time window, limit 100: ${stats(agentWindow)}`);
  const median = (xs: number[]) => percentile([...xs].sort((a, b) => a - b), 0.5);
  console.log(JSON.stringify({ machine: machine(), entries: N, pk: median(pk), oneRun: median(oneRun), runPage: median(runPage), agentNewest: median(agentNewest), deep: median(deep), kindWindow: median(kindWindow), agentWindow: median(agentWindow) }));
} finally {
  await sql`DROP SCHEMA IF EXISTS ${sql(schema)} CASCADE`.catch(() => undefined);
  await store.close();
}
