import * as aq from "arquero";
import { readDataJSON } from "./files.js";

/** Column names of {@link loadPenguins}'s table. */
export const PENGUIN_FEATURES = ["bill_length", "bill_depth", "flipper_length"] as const;

/**
 * The Palmer penguins (344 birds, 3 species; CC0, see `data/README.md`) as an arquero table with
 * short column names: species, island, sex, bill_length, bill_depth, flipper_length (mm), body_mass (g).
 * Rows missing any measurement are dropped (2 birds); `sex` may be null.
 */
export function loadPenguins(): aq.ColumnTable {
  const raw = aq.from(readDataJSON("penguins.json"));
  return raw
    .select({
      Species: "species",
      Island: "island",
      Sex: "sex",
      "Beak Length (mm)": "bill_length",
      "Beak Depth (mm)": "bill_depth",
      "Flipper Length (mm)": "flipper_length",
      "Body Mass (g)": "body_mass",
    })
    .filter((d: Record<string, unknown>) =>
      d.bill_length != null && d.bill_depth != null && d.flipper_length != null && d.body_mass != null,
    )
    .derive({ sex: (d: { sex: string | null }) => (d.sex === "MALE" || d.sex === "FEMALE" ? d.sex : null) });
}
