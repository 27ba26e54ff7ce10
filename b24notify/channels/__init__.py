"""Delivery channels: each sends one Alert or raises a classified DeliveryError."""
