import * as aq from "arquero";
import { readDataJSON } from "./files.js";

/** Numeric columns of {@link loadCars}'s table. */
export const CAR_FEATURES = ["mpg", "cylinders", "displacement", "horsepower", "weight", "acceleration", "year"] as const;

/** One car as {@link loadCars} returns it. */
export interface CarRow {
  name: string;
  /** Miles per US gallon. */
  mpg: number;
  cylinders: number;
  /** Engine displacement, cubic inches. */
  displacement: number;
  horsepower: number;
  /** Weight in pounds. */
  weight: number;
  /** Seconds from 0 to 60 mph. */
  acceleration: number;
  /** Model year as a number, e.g. 1970. */
  year: number;
  /** "USA", "Europe" or "Japan". */
  origin: string;
}

const SOURCE: Record<keyof CarRow, string> = {
  name: "Name",
  mpg: "Miles_per_Gallon",
  cylinders: "Cylinders",
  displacement: "Displacement",
  horsepower: "Horsepower",
  weight: "Weight_in_lbs",
  acceleration: "Acceleration",
  year: "Year",
  origin: "Origin",
};

/**
 * The 1970-1982 cars data set (`data/cars.json`, 406 cars; see `data/README.md`) as an arquero
 * table with short column names: name, mpg, cylinders, displacement (cu in), horsepower, weight
 * (lb), acceleration (s to 60 mph), year (a number, from the file's "1970-01-01" dates) and origin.
 * Rows missing any value are dropped: 8 cars lack mpg and 6 horsepower, leaving 392.
 */
export function loadCars(): aq.ColumnTable {
  const rows: CarRow[] = [];
  for (const raw of readDataJSON("cars.json")) {
    const r = Object.fromEntries(Object.entries(SOURCE).map(([k, src]) => [k, raw[src]])) as Record<keyof CarRow, unknown>;
    if (Object.values(r).some((v) => v === null || v === undefined || v === "")) continue;
    // The file stores the model year as a date string; keep the year number.
    const year = Number.parseInt(String(r.year).slice(0, 4), 10);
    rows.push({ ...(r as unknown as CarRow), year });
  }
  return aq.from(rows);
}
