"""villageami.fieldcheck"""
