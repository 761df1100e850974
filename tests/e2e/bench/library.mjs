// The generated library and the queries of the palette benchmarks (palette.mjs, core.mjs).

/** Every prefix of each query counts as one keystroke. */
export const QUERIES = ['shd', 'refund', 'order status', 'tkzc', 'greting', 'coupon 12', '退款'];

/** `n` generated templates: a third with Chinese titles, every one with a Chinese tag. */
export function generated(n) {
  const words = ['order', 'refund', 'shipping', 'delay', 'greeting', 'invoice', 'coupon', 'address', 'payment', 'return'];
  const han = ['稍等', '退款', '发货', '订单', '优惠', '地址', '支付', '感谢', '售后', '物流'];
  const list = [];
  for (let i = 0; i < n; i++) {
    const w = words[i % words.length];
    const h = han[(i * 7) % han.length];
    list.push({
      id: `gen-${i}`,
      title: i % 3 === 0 ? `${h}${i}` : `${w} template ${i}`,
      shortcut: `${w.slice(0, 2)}${i}`,
      tags: [w, h],
      parts: [{ type: 'text', text: `Generated body ${i}: about your ${w} ${h}, reply soon.` }],
    });
  }
  return list;
}
