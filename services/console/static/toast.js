// Toasts: a short result line, optional buttons, a close button. Text only, never HTML.

const SUCCESS_MS = 15000;

export function toast({ kind, text, buttons = [] }) {
  const host = document.getElementById("toasts");
  const box = document.createElement("div");
  box.className = `toast toast-${kind}`;
  box.setAttribute("role", kind === "error" ? "alert" : "status");
  const line = document.createElement("span");
  line.className = "toast-text";
  line.textContent = text;
  box.append(line);
  for (const spec of buttons) {
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = spec.label;
    b.className = spec.className || "";
    b.addEventListener("click", () => spec.onClick(b, box));
    box.append(b);
  }
  const close = document.createElement("button");
  close.type = "button";
  close.className = "toast-close";
  close.setAttribute("aria-label", "Dismiss");
  close.textContent = "×";
  close.addEventListener("click", () => box.remove());
  box.append(close);
  host.append(box);
  if (kind !== "error") {
    setTimeout(() => {
      if (!box.contains(document.activeElement) && !box.dataset.keep) box.remove();
    }, SUCCESS_MS);
  }
  return box;
}
