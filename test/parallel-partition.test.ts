import { test } from "node:test";
import assert from "node:assert/strict";
import * as aq from "arquero";
import { loadPenguins } from "../src/data/penguins.js";
import { addRowIds, checkPartition, partitionIndices, partitionTable, ROW_ID } from "../src/parallel/partition.js";

const penguins = loadPenguins();

function ids(t: aq.ColumnTable): number[] {
  return Array.from(t.array(ROW_ID) as ArrayLike<number>, Number);
}

for (const scheme of ["contiguous", "shuffled", "stratified"] as const) {
  test(`${scheme} parts are disjoint, cover every row, and differ in size by at most one`, () => {
    for (const n of [1, 3, 4, 7]) {
      const parts = partitionTable(penguins, n, { scheme, seed: 5, label: "species" });
      const check = checkPartition(parts, n, { total: penguins });
      assert.equal(check.rows, penguins.numRows());
      assert.ok(Math.max(...check.sizes) - Math.min(...check.sizes) <= 1, `sizes ${check.sizes}`);
      // Every part keeps the original columns (plus the row id).
      for (const p of parts) assert.deepEqual(p.columnNames(), [...penguins.columnNames(), ROW_ID]);
    }
  });
}

test("contiguous parts are consecutive blocks; shuffled parts are not, and depend on the seed only", () => {
  const blocks = partitionTable(penguins, 4);
  assert.deepEqual(ids(blocks[1]!), Array.from({ length: blocks[1]!.numRows() }, (_, i) => ids(blocks[0]!).length + i));
  const a = partitionTable(penguins, 4, { scheme: "shuffled", seed: 1 }).map(ids);
  const b = partitionTable(penguins, 4, { scheme: "shuffled", seed: 1 }).map(ids);
  const c = partitionTable(penguins, 4, { scheme: "shuffled", seed: 2 }).map(ids);
  assert.deepEqual(a, b);
  assert.notDeepEqual(a, c);
  assert.notDeepEqual(a[0], ids(blocks[0]!));
});

test("stratified parts keep each class's count within one row of count / n", () => {
  const n = 5;
  const parts = partitionTable(penguins, n, { scheme: "stratified", label: "species", seed: 9 });
  const species = Array.from(penguins.array("species") as ArrayLike<string>);
  const totals = new Map<string, number>();
  for (const s of species) totals.set(s, (totals.get(s) ?? 0) + 1);
  for (const p of parts) {
    const counts = new Map<string, number>();
    for (const s of Array.from(p.array("species") as ArrayLike<string>)) counts.set(s, (counts.get(s) ?? 0) + 1);
    for (const [cls, total] of totals) {
      const got = counts.get(cls) ?? 0;
      assert.ok(Math.abs(got - total / n) < 1, `class ${cls}: ${got} rows in a part, expected ${total / n} within one`);
    }
    // Proportions within a few points of the whole table's.
    for (const [cls, total] of totals) {
      assert.ok(Math.abs((counts.get(cls) ?? 0) / p.numRows() - total / penguins.numRows()) < 0.03, `class ${cls} share`);
    }
  }
});

test("checkPartition catches overlap, missing rows and a wrong part count", () => {
  const table = addRowIds(aq.table({ v: [1, 2, 3, 4, 5, 6] }));
  const [a, b] = partitionTable(table, 2);
  assert.throws(() => checkPartition([a!, a!], 2), /row 0 is in part 0 and in part 1/);
  assert.throws(() => checkPartition([a!], 1, { total: 6 }), /hold 3 rows but the table has 6/);
  assert.throws(() => checkPartition([a!, b!], 3), /expected 3 parts, but got 2/);
  assert.throws(() => checkPartition([aq.table({ v: [1] })], 1), /no row-id column "_row"/);
  assert.deepEqual(checkPartition([a!, b!], 2).sizes, [3, 3]);
});

test("bad n and unknown label columns are errors that name them", () => {
  assert.throws(() => partitionTable(penguins, 0), /positive integer, but got 0/);
  assert.throws(() => partitionTable(penguins, 2.5), /positive integer, but got 2.5/);
  assert.throws(() => partitionTable(penguins, 10_000), /cannot split 342 rows into 10000/);
  assert.throws(() => partitionTable(penguins, 2, { scheme: "stratified", label: "beak" }), /no label column "beak"/);
  assert.throws(() => partitionTable(penguins, 2, { scheme: "stratified" }), /needs options.label/);
  assert.throws(() => partitionIndices(10, 2, { scheme: "random" as never }), /scheme must be one of contiguous, shuffled, stratified, but got "random"/);
});
