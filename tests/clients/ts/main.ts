// A small program written against the types openapi-typescript generates from
// openapi/openapi.json (schema.d.ts, made by the test next to this file), calling the
// service through openapi-fetch. `tsc --noEmit` (strict) checks every path, parameter,
// request body and response field below; the test then compiles it and runs it under Node
// against a live server and checks the JSON it prints.
import createClient from "openapi-fetch";
import type { components, operations, paths } from "./schema.js";

type Schemas = components["schemas"];
type Problem = Schemas["Problem"];
// operationIds are part of the contract: these names must exist in the generated types.
type Me = operations["get_me"]["responses"][200]["content"]["application/json"];
type Page = operations["list_messages"]["responses"][200]["content"]["application/json"];

function setting(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
}

function failed(call: string, status: number, error: Problem | undefined): never {
  throw new Error(`${call}: ${status} ${JSON.stringify(error)}`);
}

const client = createClient<paths>({
  baseUrl: setting("CHAT_BASE_URL"),
  headers: { Authorization: `Bearer ${setting("CHAT_TOKEN")}` },
});

const me = await client.GET("/v1/me");
if (!me.data) failed("GET /v1/me", me.response.status, me.error);
const user: Me = me.data;

const created = await client.POST("/v1/rooms", {
  body: { name: "from typescript", member_ids: [setting("CHAT_PEER_ID")] },
});
if (!created.data) failed("POST /v1/rooms", created.response.status, created.error);
const room: Schemas["Room"] = created.data;

const send: Schemas["MessageSend"] = {
  client_msg_id: crypto.randomUUID(),
  kind: "text",
  body: "hello from typescript",
};
const sent = await client.POST("/v1/rooms/{room_id}/messages", {
  params: { path: { room_id: room.id } },
  body: send,
});
if (!sent.data) failed("POST /v1/rooms/{room_id}/messages", sent.response.status, sent.error);
const message: Schemas["Message"] = sent.data;

const history = await client.GET("/v1/rooms/{room_id}/messages", {
  params: { path: { room_id: room.id }, query: { after: 0, limit: 10 } },
});
if (!history.data) failed("GET /v1/rooms/{room_id}/messages", history.response.status, history.error);
const page: Page = history.data;

// A room that does not exist (or is not the caller's): the error is the typed Problem.
const missing = await client.GET("/v1/rooms/{room_id}", {
  params: { path: { room_id: "00000000-0000-4000-8000-000000000000" } },
});
const problem: Problem | undefined = missing.error;
const code: Schemas["ErrorCode"] | undefined = problem?.code;

console.log(
  JSON.stringify({
    me: { id: user.id, name: user.name, online: user.online },
    room: {
      id: room.id,
      kind: room.kind,
      members: room.members.map((m) => ({ user_id: m.user_id, role: m.role })),
    },
    sent: { id: message.id, seq: message.seq, body: message.body, sender_id: message.sender_id },
    history: page.items.map((m) => ({ id: m.id, seq: m.seq, body: m.body })),
    next_cursor: page.next_cursor,
    error: {
      status: missing.response.status,
      content_type: missing.response.headers.get("content-type"),
      code,
    },
  }),
);
