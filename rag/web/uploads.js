// Gradio checks an upload's size and type in the page, and says so in English alone, as an
// error badge left on the drop zone. The chat checks first and says it in both languages, on a
// line of its own; the other files of the same choice or drop are uploaded as usual.
(() => {
  const UPLOAD = /*UPLOAD*/null;
  const fill = (template, values) => template.replace(/\{(\w+)\}/g, (all, key) => values[key] ?? all);
  const why = (file) => {
    const suffix = (file.name.match(/\.[^.]+$/) || [""])[0].toLowerCase();
    if (!suffix) return fill(UPLOAD.no_suffix, {name: file.name});
    if (!UPLOAD.suffixes.includes(suffix)) return fill(UPLOAD.unsupported, {name: file.name, suffix});
    if (file.size > UPLOAD.limit) return fill(UPLOAD.too_large, {name: file.name, size: (file.size / 2 ** 20).toFixed(1)});
    return null;
  };
  const tell = (reasons) => {
    const note = document.querySelector("#rag-upload-note");
    if (!note) return;
    note.replaceChildren(...reasons.map((reason) => {
      const line = document.createElement("p");
      line.className = "rag-failed";
      line.textContent = reason;
      return line;
    }));
  };
  const sort = (files) => {
    const kept = new DataTransfer();
    const reasons = [];
    for (const file of files) {
      const reason = why(file);
      if (reason) reasons.push(reason); else kept.items.add(file);
    }
    tell(reasons);
    return {kept, refused: reasons.length};
  };
  document.addEventListener("change", (event) => {
    const input = event.target;
    if (!UPLOAD || !input.matches || !input.matches("#rag-upload input[type=file]") || input.dataset.sorted) return;
    const {kept, refused} = sort(input.files);
    if (!refused) return;
    event.stopImmediatePropagation();
    input.files = kept.files;
    if (kept.files.length) {
      input.dataset.sorted = "1";
      input.dispatchEvent(new Event("change", {bubbles: true}));
      delete input.dataset.sorted;
    } else {
      input.value = "";
    }
  }, true);
  document.addEventListener("drop", (event) => {
    const zone = event.target.closest && event.target.closest("#rag-upload");
    const input = zone && zone.querySelector("input[type=file]");
    if (!UPLOAD || !input || !event.dataTransfer) return;
    const {kept, refused} = sort(event.dataTransfer.files);
    if (!refused) return;
    event.stopImmediatePropagation();
    event.preventDefault();
    if (kept.files.length) {
      input.files = kept.files;
      input.dataset.sorted = "1";
      input.dispatchEvent(new Event("change", {bubbles: true}));
      delete input.dataset.sorted;
    }
  }, true);
})();
