// What Gradio's chat does not do by itself. The send button, an icon, gets a name, and the
// question box its own. Screen readers are given each message's text, where Gradio's
// aria-label holds its raw HTML. A new answer is scrolled to its start, not its end: on a
// phone a long reply would otherwise hide its first line, the answer, above the fold. And
// the copy buttons copy text (the answer, its confidence, where it was read), not the
// reply's markup.
(() => {
  const MESSAGES = "[data-testid='bot'], [data-testid='user']";
  const flat = (node) => node ? node.innerText.replace(/\s+/g, " ").trim() : "";
  const tidy = () => {
    document.querySelectorAll("#rag-question button[data-testid='submit-button']:not([aria-label])")
      .forEach((button) => button.setAttribute("aria-label", "Ask · Demander"));
    // the box's label wraps the send button too, whose name would otherwise join the box's
    document.querySelectorAll("#rag-question textarea:not([aria-label])")
      .forEach((box) => box.setAttribute("aria-label", "Your question · Votre question"));
    const shown = document.querySelectorAll(MESSAGES);
    let changed = null;
    shown.forEach((message) => {
      const who = message.dataset.testid === "bot" ? "Answer: " : "Question: ";
      const label = who + flat(message);
      if (message.getAttribute("aria-label") === label) return;
      message.setAttribute("aria-label", label);
      changed = message;
    });
    const last = shown[shown.length - 1];
    if (!changed || changed !== last) return;
    const chat = last.closest(".bubble-wrap");
    if (!chat) return;
    const top = last.getBoundingClientRect().top - chat.getBoundingClientRect().top;
    // 40 px above the answer: the chat's toolbar (copy, clear) sits over the top of the chat
    chat.scrollTop += last.dataset.testid === "bot" ? top - 40 : chat.scrollHeight;
  };
  new MutationObserver(tidy).observe(document.documentElement,
    {subtree: true, childList: true, characterData: true, attributes: true, attributeFilter: ["aria-label"]});

  const plain = (message) => {
    const reply = message.querySelector(".rag-reply");
    if (!reply) return flat(message);
    const answer = reply.querySelector(":scope > p");
    const source = reply.querySelector("details[open] > summary");
    return [flat(answer), flat(source)].filter(Boolean).join("\n");
  };
  // Gradio puts a message's buttons after it, as a sibling in the message list.
  const messageOf = (button) => {
    const buttons = button.closest(".message-buttons");
    for (let node = buttons && buttons.previousElementSibling; node; node = node.previousElementSibling) {
      const inside = node.querySelectorAll(MESSAGES);
      if (inside.length) return inside[inside.length - 1];
    }
    return null;
  };
  const write = async (text) => {
    try {
      await navigator.clipboard.writeText(text);
    } catch (error) {  // no clipboard API outside a secure context: a selected text area
      const area = document.createElement("textarea");
      area.value = text;
      document.body.appendChild(area);
      area.select();
      document.execCommand("copy");
      area.remove();
    }
  };
  document.addEventListener("click", (event) => {
    const button = event.target.closest && event.target.closest(
      "button[aria-label='Copy message'], button[aria-label='Copy conversation']");
    if (!button || !button.closest("#rag-chat")) return;
    event.stopImmediatePropagation();
    event.preventDefault();
    let text;
    if (button.getAttribute("aria-label") === "Copy message") {
      const message = messageOf(button);
      text = message ? plain(message) : "";
    } else {
      text = [...document.getElementById("rag-chat").querySelectorAll(MESSAGES)]
        .map((m) => (m.dataset.testid === "bot" ? "" : "> ") + plain(m)).join("\n\n");
    }
    write(text);
  }, true);
})();
