// Live params: every component's params with type, default and doc, editable in place.
// The server validates (Param.convert) and answers 400 with the reason; nothing changes then.
import { api, el, fmt, showError, clearError } from './api.js';

function parseValue(text, param) {
  if (param.type === 'str') return text;
  if (param.type === 'period') {
    const n = Number(text);
    return text.trim() !== '' && Number.isFinite(n) ? n : text;
  }
  if (param.nullable && text.trim() === '') return null;
  // What JSON cannot carry (NaN, 1e999 → Infinity) goes as the text: the server says what is wrong.
  let value;
  try { value = JSON.parse(text); } catch (e) { return text; }
  return typeof value === 'number' && !Number.isFinite(value) ? text : value;
}

function show(value) {
  return typeof value === 'string' ? value : JSON.stringify(value);
}

export class ParamsPanel {
  constructor(container, config) {
    this.container = container;
    this.inputs = new Map();
    this.render(config);
  }

  render(config) {
    const root = el('div', { class: 'params' });
    for (const [full, comp] of Object.entries(config.components)) {
      const section = el('div', { class: 'component-params', dataset: { component: full } },
        el('h4', {}, full, ' ', el('span', { class: 'ptype', text: comp.type })));
      const names = Object.keys(comp.params);
      if (!names.length) section.append(el('div', { class: 'muted', text: 'no params' }));
      for (const name of names) section.append(this.row(full, name, comp.params[name], config.editable !== false));
      root.append(section);
    }
    this.container.replaceChildren(root);
  }

  row(component, name, param, editable) {
    const path = `${component}/${name}`;
    let input;
    if (param.choices) {
      input = el('select', {}, ...param.choices.map((c) => el('option', { value: show(c), text: show(c) })));
      input.value = show(param.value);
    } else if (param.type === 'bool') {
      input = el('input', { type: 'checkbox' });
      input.checked = !!param.value;
    } else {
      input = el('input', { type: 'text', value: show(param.value), spellcheck: 'false' });
    }
    const status = el('div', { class: 'status' });
    const limits = [param.type, param.range ? `[${param.range.map((v) => v ?? '').join(', ')}]` : null,
      param.nullable ? 'nullable' : null, param.live === false ? 'at start only' : null].filter(Boolean).join(' ');
    // A param read only at start, or any param of an app that does not run (a recording): shown, not editable.
    if (!editable || param.live === false) {
      input.disabled = true;
      input.title = editable ? 'read when the app starts: set it in the app file, --config or --set' : 'a recording: nothing runs';
    }
    const apply = async () => {
      let value;
      if (param.choices) value = param.choices.find((c) => show(c) === input.value);
      else if (param.type === 'bool') value = input.checked;
      else value = parseValue(input.value, param);
      status.replaceChildren();
      try {
        const result = await api.post('/api/config', { [path]: value });
        input.classList.remove('invalid');
        status.replaceChildren(el('span', { class: 'param-ok', text: `applied: ${show(result.applied[path])}` }));
        clearError();
        this.refresh(result);
      } catch (error) {
        input.classList.add('invalid');
        status.replaceChildren(el('span', { class: 'param-error', text: error.message }));
        showError(`param not changed: ${error.message}`);
      }
    };
    input.addEventListener('change', apply);
    const row = el('div', { class: 'param-row', dataset: { param: path } },
      el('div', { class: 'line' }, el('span', { class: 'pname', text: name, title: param.doc }), input,
        el('span', { class: 'ptype', text: limits })),
      el('div', { class: 'doc', text: `${param.doc || ''} (default ${param.required ? 'required' : fmt(show(param.default))})` }),
      status);
    this.inputs.set(path, { input, param });
    return row;
  }

  refresh(config) {
    for (const [full, comp] of Object.entries(config.components)) {
      for (const [name, param] of Object.entries(comp.params)) {
        const entry = this.inputs.get(`${full}/${name}`);
        if (!entry || document.activeElement === entry.input) continue;
        if (entry.input.type === 'checkbox') entry.input.checked = !!param.value;
        else entry.input.value = show(param.value);
        entry.param.value = param.value;
      }
    }
  }
}
