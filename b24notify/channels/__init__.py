"""Delivery channels: each sends one Notice (notices.py) or raises a classified DeliveryError."""
