"""Procountor sync: customers, billing data, products, invoices and payments between us and Procountor."""
