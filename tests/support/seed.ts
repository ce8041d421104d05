/**
 * The order bodies of the README's examples, which billing accepts both: the seed's typed one, and the all-strings one
 * of the resilience scenario. The gateway normalises each (total_amount as a decimal string with two decimals).
 */
export const typedOrder = { user_id: 'usr_123', number_of_items: 3, total_amount: 99.97 } as const;
export const allStringsOrder = { user_id: '3', number_of_items: '5', total_amount: '180' } as const;
