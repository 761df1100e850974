// @ts-check
/*
 * A small strict JSON parser that remembers where each value starts, so an import error can
 * name the line and column of a field (`templates[1].parts[2].segments[0].color`), as the
 * daemon's CLI does. Exports `QuiverJson`:
 *   QuiverJson.parse(text) -> {value, at(path) -> {line, column} | null}
 *   throws QuiverJson.SyntaxError {message, line, column} on malformed JSON.
 */


/** A JSON value (members and elements are JSON values too). */
/** @typedef {null | boolean | number | string | unknown[] | {[key: string]: unknown}} Json */
/** @typedef {{line: number, column: number}} Position */

export const QuiverJson = (() => {
  class JsonSyntaxError extends Error {
    /**
     * @param {string} message
     * @param {number} line
     * @param {number} column
     */
    constructor(message, line, column) {
      super(message);
      this.line = line;
      this.column = column;
    }
  }

  /**
   * @param {string} text
   * @returns {{value: Json, at: (path: string) => Position | null}}
   */
  function parse(text) {
    let i = 0;
    /** @type {Map<string, number>} */
    const positions = new Map();
    const lineStarts = [0];
    for (let k = 0; k < text.length; k++) if (text[k] === '\n') lineStarts.push(k + 1);
    /** @param {number} offset @returns {Position} */
    const where = (offset) => {
      let lo = 0;
      let hi = lineStarts.length - 1;
      while (lo < hi) {
        const mid = (lo + hi + 1) >> 1;
        if (lineStarts[mid] <= offset) lo = mid;
        else hi = mid - 1;
      }
      return { line: lo + 1, column: offset - lineStarts[lo] + 1 };
    };
    /** @param {string} msg @returns {never} */
    const fail = (msg, at = i) => {
      const { line, column } = where(Math.min(at, text.length));
      throw new JsonSyntaxError(msg, line, column);
    };
    const ws = () => { while (i < text.length && ' \t\n\r'.includes(text[i])) i++; };
    /** @param {string} path @param {string | number} key */
    const childPath = (path, key) => (typeof key === 'number'
      ? `${path}[${key}]`
      : (/^[A-Za-z_][\w]*$/.test(key) ? (path ? `${path}.${key}` : key) : `${path}[${JSON.stringify(key)}]`));

    /** @returns {string} */
    function string() {
      const start = i;
      i++; // opening quote
      while (i < text.length) {
        const c = text[i];
        if (c === '"') {
          i++;
          try {
            return JSON.parse(text.slice(start, i));
          } catch {
            fail('invalid string escape', start);
          }
        }
        if (c === '\\') i += 2;
        else if (c < ' ') fail('control character in string');
        else i++;
      }
      return fail('unterminated string', start);
    }

    /**
     * @param {string} path
     * @returns {Json}
     */
    function value(path) {
      ws();
      positions.set(path, i);
      const c = text[i];
      if (c === '{') {
        i++;
        /** @type {{[key: string]: unknown}} */
        const obj = {};
        ws();
        if (text[i] === '}') { i++; return obj; }
        for (;;) {
          ws();
          if (text[i] !== '"') fail('expected a "quoted" key');
          const keyAt = i;
          const key = string();
          ws();
          if (text[i] !== ':') fail('expected ":"');
          i++;
          const p = childPath(path, key);
          obj[key] = value(p);
          if (!positions.has(`${p}#key`)) positions.set(`${p}#key`, keyAt);
          ws();
          if (text[i] === ',') { i++; continue; }
          if (text[i] === '}') { i++; return obj; }
          fail('expected "," or "}"');
        }
      }
      if (c === '[') {
        i++;
        /** @type {unknown[]} */
        const arr = [];
        ws();
        if (text[i] === ']') { i++; return arr; }
        for (;;) {
          arr.push(value(childPath(path, arr.length)));
          ws();
          if (text[i] === ',') { i++; continue; }
          if (text[i] === ']') { i++; return arr; }
          fail('expected "," or "]"');
        }
      }
      if (c === '"') return string();
      const m = /^(?:-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?|true|false|null)/.exec(text.slice(i, i + 400));
      if (!m) return fail(i >= text.length ? 'unexpected end of the file' : `unexpected character ${JSON.stringify(c)}`);
      i += m[0].length;
      return JSON.parse(m[0]);
    }

    const v = value('');
    ws();
    if (i < text.length) fail('unexpected text after the JSON value');
    return {
      value: v,
      /** Where `path` is (its key if it is an object member), or the nearest enclosing value. */
      at(/** @type {string} */ path) {
        let p = path;
        while (p) {
          const off = positions.get(`${p}#key`) ?? positions.get(p);
          if (off !== undefined) return where(off);
          const up = p.replace(/(\.[^.[\]]+|\[[^\]]*\])$/, '');
          if (up === p) break;
          p = up;
        }
        const top = positions.get('');
        return top === undefined ? null : where(top);
      },
    };
  }

  return { parse, SyntaxError: JsonSyntaxError };
})();
