// The action dialog: what will happen, a reason, parameters, a validate_only preview,
// then one confirm. One request_id per opened dialog, so a double click or a retry acts once.

import { describeError, newRequestId, postJSON, sessionExpired, workspace } from "./http.js";
import { toast } from "./toast.js";

const LABELS = { pause_agent: "Pause", resume_agent: "Resume", set_budget: "Set budget", restart_agent: "Restart", rollback: "Roll back" };
const VERB = { pause_agent: "Pausing…", resume_agent: "Resuming…", set_budget: "Saving…", restart_agent: "Restarting…", rollback: "Rolling back…" };
const MIN_REASON = 3;

const $ = (id) => document.getElementById(id);
let state = null; // the open dialog's spec and progress
let onDone = () => {};

export function onActionDone(callback) {
  onDone = callback;
}

function subject(spec) {
  if (spec.scope === "fleet") return "every agent in the fleet";
  if (spec.scope === "department") return `every agent in department ${spec.target}`;
  return `agent ${spec.target}`;
}

function pauseParams() {
  if (document.querySelector("input[name=pause-mode]:checked").value === "indefinite") return { indefinite: true };
  const minutes = Number($("pause-minutes").value);
  return Number.isInteger(minutes) ? { duration_minutes: minutes } : { duration_minutes: -1 };
}

function budgetParams() {
  if (document.querySelector("input[name=budget-mode]:checked").value === "clear") return { clear: true };
  const raw = $("budget-dollars").value;
  return raw === "" ? {} : { monthly_limit_cents: Math.round(Number(raw) * 100) };
}

function params() {
  if (state.type === "pause_agent") return pauseParams();
  if (state.type === "set_budget") return budgetParams();
  return {};
}

function summary() {
  const who = subject(state);
  const p = params();
  switch (state.type) {
    case "pause_agent": {
      const how = p.indefinite ? "until someone resumes them" : `for ${p.duration_minutes} minutes`;
      const skip = state.scope === "agent" ? "" : " Agents already paused stay as they are.";
      return `Pauses ${who} ${how}: they stop taking work.${skip}`;
    }
    case "resume_agent":
      return `Resumes ${who} that are paused: they take work again.`;
    case "set_budget":
      if (p.clear) return `Clears the own monthly budget of ${state.targetLabel}; its agents fall back to the next budget up.`;
      return `Sets the own monthly budget of ${state.targetLabel} to $${((p.monthly_limit_cents || 0) / 100).toFixed(2)}.`;
    case "restart_agent":
      return `Restarts agent ${state.target}: its generation goes up and it starts afresh. This cannot be undone.`;
    case "rollback":
      return `Undoes ${state.targetLabel}: everything it changed goes back to how it was, as a new audited action.`;
    default:
      return "";
  }
}

function reason() {
  return $("dialog-reason").value.trim();
}

function body(validateOnly) {
  const r = reason();
  const previewReason = r.length >= MIN_REASON ? r : "console preview";
  if (state.type === "rollback") {
    return {
      action_id: state.actionId,
      reason: validateOnly ? previewReason : r,
      request_id: validateOnly ? undefined : state.requestId,
      validate_only: validateOnly,
      skip_superseded: validateOnly ? true : $("skip-superseded").checked,
      skip_denied: validateOnly ? true : $("skip-denied").checked,
    };
  }
  return {
    action_type: state.type,
    scope: state.scope,
    target_id: state.target,
    reason: validateOnly ? previewReason : r,
    params: params(),
    request_id: validateOnly ? undefined : state.requestId,
    validate_only: validateOnly,
    skip_denied: validateOnly ? true : $("skip-denied").checked,
  };
}

function endpoint() {
  return `/w/${workspace()}/api/${state.type === "rollback" ? "rollback" : "execute"}`;
}

function li(text, className) {
  const item = document.createElement("li");
  item.textContent = text;
  if (className) item.className = className;
  return item;
}

function renderPreview(action) {
  const box = $("preview-body");
  box.replaceChildren();
  const changes = document.createElement("ul");
  changes.id = "preview-changes";
  for (const a of action.agents) {
    const until = a.resume_at ? ` (until ${new Date(a.resume_at).toLocaleString()})` : "";
    changes.append(li(`${a.agent_id}: ${a.from} → ${a.to}${until}`, "change"));
  }
  for (const b of action.budgets) {
    const money = (c) => (c === null || c === undefined ? "none" : `$${(c / 100).toFixed(2)}`);
    changes.append(li(`budget of ${b.scope} ${b.target_id}: ${money(b.previous_monthly_limit_cents)} → ${money(b.new_monthly_limit_cents)}`, "change"));
  }
  const head = document.createElement("p");
  head.textContent = action.count ? `${action.count} change(s):` : "Nothing would change.";
  box.append(head, changes);
  if (action.truncated) box.append(Object.assign(document.createElement("p"), { textContent: "(first 100 shown)" }));
  const denied = action.skipped.filter((s) => s.reason === "denied");
  const superseded = action.skipped.filter((s) => s.reason !== "denied");
  if (denied.length) {
    const p = document.createElement("p");
    p.className = "denied";
    p.textContent = `Denied to you (${denied.length}):`;
    const list = document.createElement("ul");
    list.id = "preview-denied";
    for (const s of denied) list.append(li(`${s.target.replace(/^agent\//, "")}: requires ${s.permission}`, "denied"));
    box.append(p, list);
  }
  if (superseded.length) {
    const p = document.createElement("p");
    p.textContent = `Changed since, left as they are (${superseded.length}):`;
    const list = document.createElement("ul");
    for (const s of superseded) list.append(li(`${s.target}: ${s.reason}${s.superseded_by ? " by " + s.superseded_by : ""}`));
    box.append(p, list);
  }
  state.denied = denied.length;
  state.superseded = superseded.length;
  state.changes = action.count;
  $("skip-denied-label").hidden = denied.length === 0;
  $("skip-superseded-label").hidden = superseded.length === 0;
}

async function preview() {
  const mine = ++state.previewSeq;
  state.previewOk = false;
  update();
  $("preview-body").textContent = "Checking…";
  const res = await postJSON(endpoint(), body(true));
  if (!state || mine !== state.previewSeq) return; // a newer preview (or a closed dialog) wins
  if (res.status === 401) return sessionExpired();
  if (!res.ok) {
    const p = document.createElement("p");
    p.className = "error";
    p.id = "preview-error";
    p.textContent = describeError(res.data.error);
    $("preview-body").replaceChildren(p);
    $("skip-denied-label").hidden = true;
    $("skip-superseded-label").hidden = true;
  } else {
    renderPreview(res.data.action);
    state.previewOk = true;
  }
  update();
}

let previewTimer = null;
function schedulePreview() {
  $("dialog-summary").textContent = summary();
  clearTimeout(previewTimer);
  previewTimer = setTimeout(preview, 250);
}

function update() {
  const confirm = $("dialog-confirm");
  const ready =
    state &&
    !state.busy &&
    state.previewOk &&
    state.changes > 0 &&
    reason().length >= MIN_REASON &&
    (state.denied === 0 || $("skip-denied").checked) &&
    (state.superseded === 0 || $("skip-superseded").checked);
  confirm.disabled = !ready;
}

function successText(action) {
  const changes = action.agents.slice(0, 3).map((a) => `${a.agent_id} ${a.from} → ${a.to}`);
  const more = action.count > changes.length ? ` and ${action.count - changes.length} more` : "";
  const skipped = action.skipped_count ? `; ${action.skipped_count} skipped` : "";
  const what = action.action_type === "rollback" ? "Rolled back" : `${LABELS[action.action_type] || action.action_type} done`;
  const target = action.scope === "fleet" ? "fleet" : `${action.scope} ${action.target_id}`;
  const detail = changes.length ? `: ${changes.join(", ")}${more}` : action.budgets.length ? ": budget saved" : "";
  return `${what} on ${target}${detail}${skipped}.`;
}

async function confirmAction(event) {
  event.preventDefault();
  if (!state || $("dialog-confirm").disabled) return;
  const spec = state; // the result is shown even if the dialog was closed meanwhile
  spec.busy = true;
  const confirm = $("dialog-confirm");
  confirm.textContent = VERB[spec.type] || "Working…";
  confirm.classList.add("loading");
  confirm.setAttribute("aria-busy", "true");
  update();
  const res = await postJSON(endpoint(), body(false));
  spec.busy = false;
  if (state === spec) {
    confirm.textContent = "Confirm";
    confirm.classList.remove("loading");
    confirm.removeAttribute("aria-busy");
  }
  if (res.status === 401) return sessionExpired();
  if (!res.ok) {
    toast({ kind: "error", text: describeError(res.data.error) });
    if (state === spec) update();
    return;
  }
  const action = res.data.action;
  if (state === spec) close();
  const buttons = [
    { label: "View", onClick: () => location.assign(`/w/${workspace()}/actions/${action.action_id}`) },
  ];
  if (action.can_rollback) {
    const label = `${(LABELS[action.action_type] || action.action_type).toLowerCase()} of ${action.scope} ${action.target_id}`;
    buttons.unshift({
      label: "Undo",
      className: "undo",
      onClick: (button, box) => {
        box.dataset.keep = "yes";
        openRollback(button, action.action_id, label.trim());
      },
    });
  }
  toast({ kind: "success", text: successText(action), buttons });
  onDone(action);
}

function close() {
  const dialog = $("action-dialog");
  if (dialog.open) dialog.close();
}

function restoreFocus() {
  if (!state) return;
  const { opener, key } = state;
  state = null;
  clearTimeout(previewTimer);
  let target = opener && opener.isConnected ? opener : null;
  if (!target && key) target = document.querySelector(`[data-key="${CSS.escape(key)}"]`);
  (target || document.getElementById("main")).focus();
}

function open(spec) {
  state = { ...spec, requestId: newRequestId(), previewSeq: 0, previewOk: false, busy: false, denied: 0, superseded: 0, changes: 0 };
  const dialog = $("action-dialog");
  $("dialog-title").textContent = spec.type === "rollback" ? `Roll back ${spec.targetLabel}` : `${LABELS[spec.type] || spec.type} ${spec.targetLabel}`;
  for (const fieldset of dialog.querySelectorAll(".params")) fieldset.hidden = fieldset.id !== `params-${spec.type}`;
  $("dialog-reason").value = "";
  $("skip-denied").checked = false;
  $("skip-superseded").checked = false;
  $("skip-denied-label").hidden = true;
  $("skip-superseded-label").hidden = true;
  $("preview-body").replaceChildren();
  $("dialog-confirm").textContent = "Confirm";
  dialog.showModal();
  $("dialog-reason").focus();
  schedulePreview();
  update();
}

export function openExecute(button) {
  open({
    type: button.dataset.actionType,
    scope: button.dataset.scope,
    target: button.dataset.target,
    targetLabel: button.dataset.targetLabel,
    opener: button,
    key: button.dataset.key,
  });
}

export function openRollback(opener, actionId, label) {
  open({ type: "rollback", actionId, targetLabel: label, opener, key: opener.dataset ? opener.dataset.key : "" });
}

export function setUpDialog() {
  const dialog = $("action-dialog");
  if (!dialog) return;
  $("dialog-form").addEventListener("submit", confirmAction);
  $("dialog-cancel").addEventListener("click", close);
  dialog.addEventListener("close", restoreFocus);
  // Esc while the action is in flight would hide its outcome: wait for the answer.
  dialog.addEventListener("cancel", (event) => {
    if (state && state.busy) event.preventDefault();
  });
  $("dialog-reason").addEventListener("input", update);
  for (const id of ["skip-denied", "skip-superseded"]) $(id).addEventListener("change", update);
  for (const input of dialog.querySelectorAll(".params input")) input.addEventListener("input", schedulePreview);
  for (const input of dialog.querySelectorAll(".params input")) input.addEventListener("change", schedulePreview);
}
