"""Promotion: special prices, coupons, flash-sale campaigns, group buys and the price quote
with its stacking rules."""
