// The negative check: every line marked `// expect-error TSnnnn` misuses the generated
// types and must be refused by tsc with that error, and no other line may fail. If the
// generated types were loose (`any`, optional everything, a union that admits anything),
// these lines would compile and the test would fail.
import createClient from "openapi-fetch";
import type { components, paths } from "./schema.js";

type Schemas = components["schemas"];

const client = createClient<paths>({ baseUrl: "http://127.0.0.1:9" });

export async function misuse(roomId: string): Promise<void> {
  const me = await client.GET("/v1/me");
  console.log(me.data?.user_id); // expect-error TS2339
  await client.GET("/v1/room", {}); // expect-error TS2345
  await client.POST("/v1/rooms", { body: { title: "no name" } }); // expect-error TS2353
  await client.GET("/v1/rooms/{room_id}/messages", { params: { path: { room_id: roomId }, query: { after: "zero" } } }); // expect-error TS2322
  await client.POST("/v1/rooms/{room_id}/messages", { params: { path: { room_id: roomId } }, body: { kind: "text", body: "no client_msg_id" } }); // expect-error TS2322
  const kind: Schemas["Message"]["kind"] = "video"; // expect-error TS2322
  const code: Schemas["ErrorCode"] = "NOT_FOUND"; // expect-error TS2322
  const receipt: Schemas["Receipt"] = { user_id: "u", delivered_at: null }; // expect-error TS2741
  console.log(kind, code, receipt);
}
