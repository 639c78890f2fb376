// A browser client of the chat service in plain JavaScript: REST for state, one
// WebSocket for live pushes (authenticated by its first frame, as browsers cannot set
// headers), `sync` after every (re)connect, ticks from receipts.
"use strict";

const state = {
  token: null,
  me: null,
  rooms: new Map(),       // room id -> room summary (with members)
  messages: new Map(),    // room id -> Map(seq -> message)
  current: null,
  ws: null,
  frameId: 0,
  pending: new Map(),     // frame id -> {resolve, reject}
  typing: new Map(),       // "room user" -> {roomId, userId, timer}: who is typing where
  lastTypingSent: 0,
  presence: new Map(),    // user id -> {online, last_seen}
  backoff: 500,
};

const $ = (id) => document.getElementById(id);

async function api(method, path, body) {
  const response = await fetch(path, {
    method,
    headers: { Authorization: `Bearer ${state.token}`, "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status === 204) return null;
  const data = await response.json();
  if (!response.ok) throw new Error(`${data.code}: ${data.detail}`);
  return data;
}

function request(frame) {
  const id = `f${++state.frameId}`;
  return new Promise((resolve, reject) => {
    state.pending.set(id, { resolve, reject });
    state.ws.send(JSON.stringify({ ...frame, id }));
  });
}

function uuid() {
  return crypto.randomUUID ? crypto.randomUUID() :
    "10000000-1000-4000-8000-100000000000".replace(/[018]/g, (c) =>
      (c ^ (crypto.getRandomValues(new Uint8Array(1))[0] & (15 >> (c / 4)))).toString(16));
}

function lastSeenText(user) {
  const p = state.presence.get(user);
  if (!p) return "";
  if (p.online) return "online";
  return p.last_seen ? `last seen ${new Date(p.last_seen).toLocaleString()}` : "offline";
}

function roomTitle(room) {
  if (room.kind === "group") return room.name;
  const other = room.members.find((m) => m.user_id !== state.me.id);
  return other ? (other.name || other.user_id) : "private chat";
}

function otherMembers(room) {
  return room.members.filter((m) => m.user_id !== state.me.id);
}

// ---- rendering ------------------------------------------------------------------------

function renderRooms() {
  const list = $("rooms");
  list.innerHTML = "";
  const rooms = [...state.rooms.values()].sort((a, b) => (b.activity || 0) - (a.activity || 0));
  for (const room of rooms) {
    const li = document.createElement("li");
    li.dataset.roomId = room.id;
    li.className = room.id === state.current ? "active" : "";
    const text = document.createElement("div");
    const title = document.createElement("div");
    title.textContent = roomTitle(room);
    const preview = document.createElement("div");
    preview.className = "preview";
    preview.textContent = room.last_message ? (room.last_message.body || "(deleted)") : "";
    text.append(title, preview);
    li.append(text);
    if (room.unread > 0) {
      const badge = document.createElement("span");
      badge.className = "unread";
      badge.textContent = room.unread;
      li.append(badge);
    }
    li.onclick = () => openRoom(room.id);
    list.append(li);
  }
}

function ticksFor(room, message) {
  if (message.sender_id !== state.me.id) return null;
  const others = otherMembers(room);
  if (others.length === 0) return { text: "✓", read: false };
  const read = others.every((m) => m.read_seq >= message.seq);
  const delivered = others.every((m) => m.delivered_seq >= message.seq);
  return { text: delivered || read ? "✓✓" : "✓", read };
}

function renderMessages() {
  const list = $("messages");
  const room = state.rooms.get(state.current);
  if (!room) return;
  const atBottom = list.scrollTop + list.clientHeight >= list.scrollHeight - 20;
  list.innerHTML = "";
  const messages = [...(state.messages.get(room.id) || new Map()).values()]
    .sort((a, b) => a.seq - b.seq);
  for (const message of messages) {
    const li = document.createElement("li");
    li.dataset.seq = message.seq;
    li.className = message.sender_id === state.me.id ? "mine" : "";
    const body = document.createElement("span");
    if (message.deleted) {
      body.className = "deleted";
      body.textContent = "message deleted";
    } else {
      body.textContent = message.body || (message.attachment ? message.attachment.name : "");
    }
    const meta = document.createElement("span");
    meta.className = "meta";
    const who = room.members.find((m) => m.user_id === message.sender_id);
    meta.textContent = `${who ? (who.name || who.user_id) : message.sender_id} · ` +
      new Date(message.created_at).toLocaleTimeString();
    li.append(body, meta);
    const ticks = ticksFor(room, message);
    if (ticks) {
      const mark = document.createElement("span");
      mark.className = ticks.read ? "ticks read" : "ticks";
      mark.textContent = ticks.text;
      mark.title = ticks.read ? "read" : (ticks.text === "✓✓" ? "delivered" : "sent");
      li.append(mark);
    }
    list.append(li);
  }
  if (atBottom) list.scrollTop = list.scrollHeight;
}

function renderHeader() {
  const room = state.rooms.get(state.current);
  if (!room) return;
  $("room-title").textContent = roomTitle(room);
  const presence = $("room-presence");
  if (room.kind === "direct") {
    const other = otherMembers(room)[0];
    presence.textContent = other ? lastSeenText(other.user_id) : "";
    presence.className = other && state.presence.get(other.user_id)?.online ?
      "presence online" : "presence";
  } else {
    const online = otherMembers(room).filter((m) => state.presence.get(m.user_id)?.online);
    presence.textContent = `${room.members.length} members, ${online.length + 1} online`;
    presence.className = "presence";
  }
}

// ---- data -----------------------------------------------------------------------------

function remember(message) {
  if (!state.messages.has(message.room_id)) state.messages.set(message.room_id, new Map());
  state.messages.get(message.room_id).set(message.seq, message);
  const room = state.rooms.get(message.room_id);
  if (room && message.seq >= room.last_seq) {
    room.last_seq = message.seq;
    room.last_message = message;
    room.activity = Date.now();
  }
}

async function loadRooms() {
  let cursor = null;
  do {
    const page = await api("GET", `/v1/rooms?limit=100${cursor ? `&cursor=${cursor}` : ""}`);
    for (const room of page.items) {
      room.activity = room.last_message ? Date.parse(room.last_message.created_at) : 0;
      // The server's unread covers every message up to last_seq; live messages at or
      // below it are not counted again.
      room.countedSeq = room.last_seq;
      // Merge, so what the client keeps (history cursor, room details) survives a reload.
      state.rooms.set(room.id, Object.assign(state.rooms.get(room.id) || {}, room));
    }
    cursor = page.next_cursor;
  } while (cursor);
  renderRooms();
  await watchPresence();
}

async function watchPresence() {
  if (!state.ws || state.ws.readyState !== WebSocket.OPEN) return;
  const users = new Set();
  for (const room of state.rooms.values()) {
    for (const member of otherMembers(room)) users.add(member.user_id);
  }
  const ids = [...users].slice(0, 500);
  if (ids.length === 0) return;
  const data = await request({ type: "presence.watch", user_ids: ids });
  for (const p of data.presence) state.presence.set(p.user_id, p);
  renderHeader();
}

async function openRoom(roomId) {
  state.current = roomId;
  $("composer").hidden = false;
  const room = await api("GET", `/v1/rooms/${roomId}`);
  Object.assign(state.rooms.get(roomId), room);
  const page = await api("GET", `/v1/rooms/${roomId}/messages?limit=50`);
  for (const message of page.items) remember(message);
  state.rooms.get(roomId).olderCursor = page.next_cursor;
  renderRooms();
  renderHeader();
  renderMessages();
  renderTyping();
  $("messages").scrollTop = $("messages").scrollHeight;
  await markRead(roomId);
}

async function loadOlder() {
  const room = state.rooms.get(state.current);
  if (!room || !room.olderCursor || room.loadingOlder) return;
  room.loadingOlder = true;
  const list = $("messages");
  const before = list.scrollHeight;
  const page = await api("GET",
    `/v1/rooms/${room.id}/messages?limit=50&before=${room.olderCursor}`);
  for (const message of page.items) remember(message);
  room.olderCursor = page.next_cursor;
  room.loadingOlder = false;
  renderMessages();
  list.scrollTop = list.scrollHeight - before;
}

async function markRead(roomId) {
  const room = state.rooms.get(roomId);
  if (!room || room.last_seq === 0 || document.hidden) return;
  const marks = await request({ type: "read", room_id: roomId, seq: room.last_seq });
  room.read_seq = marks.read_seq;
  room.unread = 0;
  renderRooms();
}

// ---- live -----------------------------------------------------------------------------

function onMessage(message) {
  remember(message);
  const room = state.rooms.get(message.room_id);
  if (!room) {
    loadRooms();
    return;
  }
  if (message.sender_id !== state.me.id) {
    // Their message ends their typing, whatever the typing lapse says.
    setTyping(message.room_id, message.sender_id, false);
    request({ type: "delivered", room_id: message.room_id, seq: message.seq }).catch(() => {});
    if (message.room_id === state.current && !document.hidden) {
      markRead(message.room_id).catch(() => {});
    } else if (message.seq > (room.countedSeq || 0)) {
      room.unread = (room.unread || 0) + 1;
      room.countedSeq = message.seq;
    }
  }
  renderRooms();
  if (message.room_id === state.current) renderMessages();
}

function onReceipt(frame) {
  const room = state.rooms.get(frame.room_id);
  if (!room) return;
  const member = room.members.find((m) => m.user_id === frame.user_id);
  if (!member) return;
  if (frame.kind === "read") {
    member.read_seq = Math.max(member.read_seq, frame.seq);
  }
  member.delivered_seq = Math.max(member.delivered_seq, frame.seq);
  if (frame.room_id === state.current) renderMessages();
}

function setTyping(roomId, userId, active) {
  const key = `${roomId} ${userId}`;
  const entry = state.typing.get(key);
  if (entry) clearTimeout(entry.timer);
  if (active) {
    // The server lapses typing after 6 s; this is the fallback if that frame is lost.
    const timer = setTimeout(() => setTyping(roomId, userId, false), 7000);
    state.typing.set(key, { roomId, userId, timer });
  } else {
    state.typing.delete(key);
  }
  if (roomId === state.current) renderTyping();
}

function renderTyping() {
  const room = state.rooms.get(state.current);
  const names = [...state.typing.values()]
    .filter((t) => t.roomId === state.current)
    .map((t) => {
      const who = room?.members.find((m) => m.user_id === t.userId);
      return who ? (who.name || who.user_id) : t.userId;
    });
  $("typing").textContent = names.length === 0 ? "" :
    `${names.join(", ")} ${names.length === 1 ? "is" : "are"} typing…`;
}

function onTyping(frame) {
  setTyping(frame.room_id, frame.user_id, frame.active);
}

async function sync() {
  const cursors = {};
  for (const [roomId, messages] of state.messages) {
    if (messages.size) cursors[roomId] = Math.max(...messages.keys());
  }
  const data = await request({ type: "sync", cursors });
  for (const [roomId, info] of Object.entries(data.rooms)) {
    const room = state.rooms.get(roomId);
    if (room) room.last_seq = info.last_seq;
  }
  if (state.current) renderMessages();
}

function connect() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const ws = new WebSocket(`${scheme}://${location.host}/v1/ws`);
  state.ws = ws;
  ws.onopen = () => ws.send(JSON.stringify({ type: "auth", token: state.token }));
  ws.onmessage = async (event) => {
    const frame = JSON.parse(event.data);
    switch (frame.type) {
      case "hello":
        state.backoff = 500;
        $("status").textContent = "online";
        await loadRooms();
        await sync();
        break;
      case "ack":
      case "error": {
        const waiter = state.pending.get(frame.id);
        if (waiter) {
          state.pending.delete(frame.id);
          frame.type === "ack" ? waiter.resolve(frame.data) : waiter.reject(new Error(frame.code));
        }
        break;
      }
      case "message":
        onMessage(frame.message);
        break;
      case "message.updated":
        remember(frame.message);
        if (frame.message.room_id === state.current) renderMessages();
        break;
      case "receipt":
        onReceipt(frame);
        break;
      case "typing":
        onTyping(frame);
        break;
      case "presence":
        state.presence.set(frame.user_id, frame);
        // Someone who has gone offline is no longer typing anywhere.
        if (!frame.online) {
          for (const t of [...state.typing.values()]) {
            if (t.userId === frame.user_id) setTyping(t.roomId, t.userId, false);
          }
        }
        renderHeader();
        break;
      case "room":
        await loadRooms();
        if (frame.room_id === state.current && frame.room) {
          Object.assign(state.rooms.get(frame.room_id), frame.room);
          renderHeader();
        }
        break;
      case "resync":
        await sync();
        break;
    }
  };
  ws.onclose = (event) => {
    $("status").textContent = event.code === 4401 ? "signed out" : "reconnecting…";
    for (const waiter of state.pending.values()) waiter.reject(new Error("disconnected"));
    state.pending.clear();
    if (event.code === 4401 || event.code === 4403) return;
    const delay = Math.random() * state.backoff;
    state.backoff = Math.min(state.backoff * 2, 15000);
    setTimeout(connect, delay);
  };
}

// ---- actions --------------------------------------------------------------------------

async function signIn(token) {
  state.token = token.trim();
  state.me = await api("GET", "/v1/me");
  $("me").textContent = state.me.name || state.me.id;
  $("signin").hidden = true;
  $("app").hidden = false;
  connect();
}

$("signin-form").onsubmit = async (event) => {
  event.preventDefault();
  try {
    await signIn($("token").value);
  } catch (error) {
    $("signin-error").textContent = `Could not sign in: ${error.message}`;
  }
};

$("composer").onsubmit = async (event) => {
  event.preventDefault();
  const input = $("body");
  const body = input.value;
  if (!body.trim() || !state.current) return;
  input.value = "";
  state.lastTypingSent = 0;  // the others clear our typing on this message
  const data = await request({
    type: "send", room_id: state.current, client_msg_id: uuid(), kind: "text", body,
  });
  remember(data.message);
  renderRooms();
  renderMessages();
};

$("body").oninput = () => {
  const now = Date.now();
  if (state.current && now - state.lastTypingSent > 2000) {
    state.lastTypingSent = now;
    request({ type: "typing", room_id: state.current, active: true }).catch(() => {});
  }
};

$("new-direct").onsubmit = async (event) => {
  event.preventDefault();
  const room = await api("POST", "/v1/rooms/direct", { user_id: $("direct-user").value.trim() });
  $("direct-user").value = "";
  await loadRooms();
  await openRoom(room.id);
};

$("new-group").onsubmit = async (event) => {
  event.preventDefault();
  const members = $("group-members").value.split(",").map((s) => s.trim()).filter(Boolean);
  const room = await api("POST", "/v1/rooms", { name: $("group-name").value, member_ids: members });
  $("group-name").value = "";
  $("group-members").value = "";
  await loadRooms();
  await openRoom(room.id);
};

$("messages").onscroll = () => {
  if ($("messages").scrollTop < 40) loadOlder();
};

document.addEventListener("visibilitychange", () => {
  if (!document.hidden && state.current) markRead(state.current);
});
