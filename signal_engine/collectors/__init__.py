"""Collectors: fetch market data from Yahoo Finance and Nasdaq, keep the raw payload, parse it strictly."""
