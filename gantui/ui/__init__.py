"""The Textual dashboard. It talks to the engine only through events and the trainer's controls."""
