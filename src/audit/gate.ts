/**
 * Small concurrency and rate primitives of the audit layer.
 */

/**
 * A per-key readers–writer gate: submissions of an agent share it; a change of the agent's
 * key takes it alone, after the submissions in flight are sequenced and before new ones are
 * checked, so no entry is checked against a key and sequenced after that key changed.
 */
export class KeyedGate {
  private readonly state = new Map<string, { shared: number; exclusive: boolean; queue: Array<() => void> }>();

  private entry(key: string) {
    let s = this.state.get(key);
    if (!s) this.state.set(key, (s = { shared: 0, exclusive: false, queue: [] }));
    return s;
  }

  private wake(key: string): void {
    const s = this.state.get(key);
    if (!s) return;
    const q = s.queue.splice(0);
    for (const w of q) w();
    if (s.shared === 0 && !s.exclusive && s.queue.length === 0) this.state.delete(key);
  }

  async shared<T>(key: string, run: () => Promise<T>): Promise<T> {
    const s = this.entry(key);
    while (s.exclusive) await new Promise<void>((r) => s.queue.push(r));
    s.shared++;
    try {
      return await run();
    } finally {
      s.shared--;
      this.wake(key);
    }
  }

  async exclusive<T>(key: string, run: () => Promise<T>): Promise<T> {
    const s = this.entry(key);
    while (s.exclusive || s.shared > 0) await new Promise<void>((r) => s.queue.push(r));
    s.exclusive = true;
    try {
      return await run();
    } finally {
      s.exclusive = false;
      this.wake(key);
    }
  }
}

/** A FIFO mutex. */
export class Mutex {
  private tail: Promise<unknown> = Promise.resolve();
  run<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.tail.then(fn, fn);
    this.tail = next.catch(() => undefined);
    return next;
  }
}

/** Token buckets per key: `rate` tokens a second, up to `burst`. */
export class RateLimiter {
  private readonly buckets = new Map<string, { tokens: number; at: number }>();

  constructor(
    private readonly rate: number,
    private readonly burst: number,
    private readonly now: () => number = Date.now
  ) {
    if (!(rate > 0) || !(burst >= 1)) throw new RangeError('rate must be > 0 and burst ≥ 1');
  }

  /**
   * Takes `n` tokens, or none: returns 0 when admitted, else the seconds to wait before `n`
   * tokens can be there (n above the burst can never be admitted: the caller splits).
   */
  take(key: string, n: number): number {
    const t = this.now();
    let b = this.buckets.get(key);
    if (!b) {
      if (this.buckets.size > 100_000) this.buckets.clear();
      this.buckets.set(key, (b = { tokens: this.burst, at: t }));
    }
    b.tokens = Math.min(this.burst, b.tokens + ((t - b.at) / 1000) * this.rate);
    b.at = t;
    if (b.tokens >= n) {
      b.tokens -= n;
      return 0;
    }
    return Math.max(1, Math.ceil((Math.min(n, this.burst) - b.tokens) / this.rate));
  }
}
