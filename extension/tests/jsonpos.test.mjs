// Unit tests of webext/lib/jsonpos.js (the options page's JSON parser that keeps the line and column
// of every field, for import errors). Run: node --test extension/tests/
import test from 'node:test';
import assert from 'node:assert/strict';
import { QuiverJson } from '../webext/lib/jsonpos.js';

const LIB = `{
  "quiver": 1,
  "templates": [
    {"id": "a", "title": "A", "parts": [{"type": "text", "text": "x"}]},
    {
      "id": "b",
      "parts": [
        {"type": "product", "segments": [{"text": "¥39",
                                         "color": "red"}]}
      ]
    }
  ]
}`;

test('parses like JSON.parse', () => {
  const doc = QuiverJson.parse(LIB);
  assert.deepEqual(JSON.parse(JSON.stringify(doc.value)), JSON.parse(LIB));
  for (const text of ['0', '-1.5e3', '"a\\u00e9\\n"', 'true', 'null', '[]', '{}', '[1, [2, {"k": [3]}]]']) {
    assert.deepEqual(JSON.parse(JSON.stringify(QuiverJson.parse(text).value)), JSON.parse(text), text);
  }
});

test('locates fields by path: the key of an object member, or the array element', () => {
  const doc = QuiverJson.parse(LIB);
  assert.deepEqual({ ...doc.at('quiver') }, { line: 2, column: 3 });
  assert.deepEqual({ ...doc.at('templates[1].parts[0].segments[0].color') }, { line: 9, column: 42 });
  assert.deepEqual({ ...doc.at('templates[1]') }, { line: 5, column: 5 });
  assert.deepEqual({ ...doc.at('templates[0].parts[0].text') }, { line: 4, column: 58 });
});

test('a path that is not in the file falls back to the nearest enclosing value', () => {
  const doc = QuiverJson.parse(LIB);
  // templates[1] has no title: the error names the template.
  assert.deepEqual({ ...doc.at('templates[1].title') }, { line: 5, column: 5 });
  assert.deepEqual({ ...doc.at('nothing') }, { line: 1, column: 1 });
});

test('syntax errors carry line and column', () => {
  const cases = [
    ['{"quiver": 1,\n "templates": [}\n', 2, 16],
    ['{"a": 1,}', 1, 9],
    ['{"a" 1}', 1, 6],
    ['[1, 2', 1, 6],
    ['{"a": "unterminated', 1, 7],
    ['{"a": 1} x', 1, 10],
    ['', 1, 1],
  ];
  for (const [text, line, column] of cases) {
    assert.throws(() => QuiverJson.parse(text), (e) => {
      assert.ok(e instanceof QuiverJson.SyntaxError, `${JSON.stringify(text)}: ${e}`);
      assert.deepEqual([e.line, e.column], [line, column], JSON.stringify(text));
      return true;
    });
  }
});
