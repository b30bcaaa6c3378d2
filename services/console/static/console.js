// The console's entry module: buttons open the dialog, results and live events refresh.

import { onActionDone, openExecute, openRollback, setUpDialog } from "./dialog.js";
import { schedule, startLive } from "./live.js";

const RELATIVE_MS = 15000;

function relative(moment) {
  const seconds = (moment - Date.now()) / 1000;
  const span = Math.abs(seconds);
  let text;
  if (span < 60) text = `${Math.floor(span)} s`;
  else if (span < 3600) text = `${Math.floor(span / 60)} min`;
  else if (span < 86400) text = `${Math.floor(span / 3600)} h ${Math.floor((span % 3600) / 60)} min`;
  else text = `${Math.floor(span / 86400)} d`;
  return seconds >= 0 ? `in ${text}` : `${text} ago`;
}

function updateTimes() {
  for (const t of document.querySelectorAll("time[data-relative]")) {
    t.textContent = relative(new Date(t.getAttribute("datetime")).getTime());
  }
}

document.addEventListener("DOMContentLoaded", () => {
  setUpDialog();
  onActionDone(() => schedule(0));
  document.addEventListener("click", (event) => {
    const button = event.target.closest("button.act");
    if (!button || button.disabled) return;
    if (button.dataset.rollback) openRollback(button, button.dataset.rollback, button.dataset.targetLabel);
    else openExecute(button);
  });
  document.addEventListener("fleetward:refreshed", updateTimes);
  setInterval(updateTimes, RELATIVE_MS);
  startLive();
});
