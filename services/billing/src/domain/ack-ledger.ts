/** An ack to send on a channel: of one delivery tag, or (multiple) of every outstanding tag up to it. */
export interface Ack<C> {
  channel: C;
  tag: number;
  multiple: boolean;
}

/**
 * Which deliveries may be acked, and how. A delivery is received, then settled (stored, recorded as rejected, or
 * dead-lettered) and only then acked, on its own channel. A multiple ack covers only tags that are all settled: a
 * delivery still unsettled is never acked by another's ack, so it cannot be lost. A settled delivery behind an
 * unsettled one is acked alone, so one held delivery never holds the others' prefetch. A closed channel's deliveries
 * are forgotten: the broker delivers them again, on another channel.
 */
export class AckLedger<C> {
  /** per open channel: its outstanding tags in delivery order (ascending), and whether each is settled */
  private readonly channels = new Map<C, Map<number, boolean>>();
  private readonly closed = new WeakSet<object>();

  received(channel: C, tag: number): void {
    if (this.isClosed(channel)) return;
    let tags = this.channels.get(channel);
    if (!tags) this.channels.set(channel, (tags = new Map<number, boolean>()));
    tags.set(tag, false);
  }

  /** Marks a delivery settled; false when its channel closed (the broker delivers it again, elsewhere). */
  settle(channel: C, tag: number): boolean {
    const tags = this.channels.get(channel);
    if (!tags?.has(tag)) return false;
    tags.set(tag, true);
    return true;
  }

  isClosed(channel: C): boolean {
    return this.closed.has(channel as object);
  }

  /** The channel closed: its outstanding deliveries are forgotten, and no ack is ever sent for them. */
  close(channel: C): void {
    this.closed.add(channel as object);
    this.channels.delete(channel);
  }

  /** The acks that settle every settled delivery, and forgets those deliveries. */
  takeAcks(): Ack<C>[] {
    const acks: Ack<C>[] = [];
    for (const [channel, tags] of this.channels) {
      let prefix = 0;
      let last: number | undefined;
      let gap = false;
      for (const [tag, settled] of tags) {
        if (!settled) {
          gap = true;
          continue;
        }
        tags.delete(tag);
        if (gap) acks.push({ channel, tag, multiple: false });
        else {
          prefix++;
          last = tag;
        }
      }
      if (last !== undefined) acks.unshift({ channel, tag: last, multiple: prefix > 1 });
    }
    return acks;
  }

  /** How many deliveries are received and not acked yet, over every open channel. */
  get outstanding(): number {
    let count = 0;
    for (const tags of this.channels.values()) count += tags.size;
    return count;
  }
}
