// Compiled by `make clients` beside the types openapi-typescript generated (schema.d.ts), with
// `tsc --noEmit --strict`: the types must describe what the API takes and answers.
import type { components, paths } from "./schema";

type Schemas = components["schemas"];

// A request body: time zones and currencies are the shared enums, local times plain strings.
const trip: Schemas["TripCreate"] = {
    name: "Lisbon",
    start_date: "2027-05-01",
    end_date: "2027-05-03",
    timezone: "Europe/Lisbon",
    base_currency: "EUR",
};
const zones: Schemas["TimeZone"][] = ["GMT+0", "GMT-0", "GMT0", "Etc/GMT+1", "UTC"];
const item: Schemas["ItemCreate"] = {
    kind: "activity",
    title: "Tram 28",
    start_local: "2027-05-01T10:00",
    start_timezone: "Europe/Lisbon",
};

// @ts-expect-error: not a time zone
const notAZone: Schemas["TimeZone"] = "Mars/Olympus";
// @ts-expect-error: not a currency
const notACurrency: Schemas["Currency"] = "ZZZ";

// Responses: the created trip, the item's local times (strings without offset), a problem.
type Created = paths["/trips"]["post"]["responses"][201]["content"]["application/json"];
type ItemRead =
    paths["/trips/{trip_id}/items/{item_id}"]["get"]["responses"][200]["content"]["application/json"];
type NotFound =
    paths["/trips/{trip_id}/items/{item_id}"]["get"]["responses"][404]["content"]["application/problem+json"];
const startsAt = (read: ItemRead): string | null => read.start_local;
const problemCode = (problem: NotFound): string => problem.code;
const createdId = (created: Created): string => created.id;

export { trip, zones, item, notAZone, notACurrency, startsAt, problemCode, createdId };
