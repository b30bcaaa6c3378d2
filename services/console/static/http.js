// Talking to the console's own endpoints, and the few facts every module needs.

export function workspace() {
  return document.body.dataset.workspace || "";
}

// A random UUID (v4). crypto.randomUUID needs a secure context; getRandomValues does not.
export function newRequestId() {
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

// The session is gone: sign in again (dev) or let the auth proxy renew it (reload).
export function sessionExpired() {
  if (document.body.dataset.dev === "yes") {
    const next = encodeURIComponent(location.pathname);
    location.assign(`/signin?expired=1&next=${next}`);
  } else {
    location.reload();
  }
}

// POST a JSON body; resolves to {ok, status, data} and never throws.
export async function postJSON(path, body) {
  let res;
  try {
    res = await fetch(path, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify(body),
    });
  } catch (err) {
    return { ok: false, status: 0, data: { error: { code: "NETWORK", reason: "", message: "the console could not be reached" } } };
  }
  let data;
  try {
    data = await res.json();
  } catch (err) {
    data = { error: { code: `HTTP_${res.status}`, reason: "", message: "the console's answer was not JSON" } };
  }
  return { ok: res.ok, status: res.status, data };
}

// "PERMISSION_DENIED INSUFFICIENT_PERMISSIONS: requires ..." plus the details worth reading.
export function describeError(error) {
  const label = [error.code, error.reason].filter(Boolean).join(" ");
  const extra = [];
  for (const v of error.field_violations || []) extra.push(`${v.field}: ${v.description}`);
  for (const v of error.precondition_violations || []) {
    extra.push(v.subject ? `${v.description} (${v.subject})` : v.description);
  }
  const meta = error.metadata || {};
  if (meta.required_permission && !String(error.message).includes(meta.required_permission)) {
    extra.push(`requires ${meta.required_permission}`);
  }
  return `${label}: ${error.message}${extra.length ? " — " + extra.join("; ") : ""}`;
}
