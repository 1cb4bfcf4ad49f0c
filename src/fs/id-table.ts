// A table of objects addressed by opaque 64-bit ids handed to the client: the low 32 bits index a
// slot, the high 32 bits carry the slot's generation. A freed slot bumps its generation, so an id
// the client keeps after a free, or one it forges, never reaches another object (ESTALE/EBADF).
// Freed slots are reused, so the table's size follows the number of live objects.
export class IdTable<T> {
  private readonly items: (T | undefined)[] = [];
  private readonly generations: number[] = [];
  private readonly free: number[] = [];
  private live = 0;

  /** `reserved` low slots are never handed out (FUSE node id 0 is invalid, 1 is the root). */
  constructor(private readonly reserved: number) {
    for (let i = 0; i < reserved; i++) {
      this.items.push(undefined);
      this.generations.push(0);
    }
  }

  get size(): number {
    return this.live;
  }

  /** Puts `item` in a specific reserved slot with generation 0 (the FUSE root). */
  setReserved(index: number, item: T): void {
    if (index >= this.reserved) throw new Error('not a reserved slot');
    if (this.items[index] === undefined) this.live++;
    this.items[index] = item;
  }

  add(item: T): { index: number; generation: number } {
    let index = this.free.pop();
    if (index === undefined) {
      index = this.items.length;
      this.items.push(item);
      this.generations.push(1);
    } else {
      this.items[index] = item;
    }
    this.live++;
    return { index, generation: this.generations[index]! };
  }

  /** The object for (low, high) id halves, or undefined if the id is unknown or stale. */
  get(low: number, high: number): T | undefined {
    const item = this.items[low];
    if (item === undefined || this.generations[low] !== high) return undefined;
    return item;
  }

  remove(index: number): void {
    if (index < this.reserved || this.items[index] === undefined) return;
    this.items[index] = undefined;
    this.generations[index] = (this.generations[index]! + 1) >>> 0 || 1;
    this.free.push(index);
    this.live--;
  }

  *values(): IterableIterator<T> {
    for (const item of this.items) if (item !== undefined) yield item;
  }
}

export function idOf(index: number, generation: number): number {
  return index + generation * 0x1_0000_0000;
}
